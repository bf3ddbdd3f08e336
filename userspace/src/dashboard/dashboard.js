/*
 * The standalone dashboard's adapter: the same views as LuCI (render.js),
 * with the rpcd method names mapped onto the daemon's HTTP API under /api/.
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */
'use strict';

(function () {
	/* method -> [HTTP method, path, query parameters]; the rpcd plugin
	 * (userspace/src/rpcd.rs) maps the same names the same way. */
	var METHODS = {
		status: ['GET', '/v1/status', []],
		devices: ['GET', '/v1/devices', []],
		flows: ['GET', '/v1/flows', ['device', 'since', 'until']],
		parties: ['GET', '/v1/parties', ['device', 'since']],
		series: ['GET', '/v1/series', ['device', 'since']],
		alerts: ['GET', '/v1/alerts', []],
		rules: ['GET', '/v1/rules', []],
		catalogue: ['GET', '/v1/catalogue', ['q']],
		label: ['POST', '/v1/devices/label'],
		confirm_label: ['POST', '/v1/devices/confirm_label'],
		block: ['POST', '/v1/rules/block'],
		unblock: ['POST', '/v1/rules/unblock'],
		pause: ['POST', '/v1/rules/pause'],
		set_rule: ['POST', '/v1/rules/set'],
		delete_rule: ['POST', '/v1/rules/delete']
	};

	function call(method, args) {
		var m = METHODS[method];
		if (!m) return Promise.reject(new Error('unknown method ' + method));
		args = args || {};
		var url = '/api' + m[1], init = { method: m[0], credentials: 'same-origin', headers: {} };
		if (m[0] === 'GET') {
			var q = m[2].filter(function (k) { return args[k] != null && args[k] !== ''; })
				.map(function (k) { return encodeURIComponent(k) + '=' + encodeURIComponent(args[k]); });
			if (q.length) url += '?' + q.join('&');
		} else {
			init.headers['Content-Type'] = 'application/json';
			init.body = JSON.stringify(args);
		}
		return fetch(url, init).then(function (res) {
			return res.text().then(function (text) {
				var body = null;
				try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
				if (!res.ok) {
					var msg = body && body.error ? body.error : (res.status + ' ' + res.statusText);
					throw new Error(msg);
				}
				return body;
			});
		});
	}

	function href(view, arg) {
		if (view === 'device') return '#/device/' + encodeURIComponent(arg);
		return '#/' + view;
	}

	var api = { call: call, href: href };
	var current = null;

	function route() {
		var main = document.getElementById('iot-main');
		if (current && current.stop) current.stop();
		while (main.firstChild) main.removeChild(main.firstChild);
		var parts = (location.hash || '#/overview').slice(2).split('/');
		var view = parts[0] || 'overview';
		var V = window.IotInspector.views;
		document.querySelectorAll('.iot-top nav a').forEach(function (a) {
			a.classList.toggle('active', a.getAttribute('data-view') === (view === 'device' ? 'devices' : view));
		});
		if (view === 'device') current = V.device(api, main, decodeURIComponent(parts[1] || ''));
		else if (V[view] && view !== 'device') current = V[view](api, main);
		else current = V.overview(api, main);
		window.scrollTo(0, 0);
	}

	window.addEventListener('hashchange', route);
	route();
})();
