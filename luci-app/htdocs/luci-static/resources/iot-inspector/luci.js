'use strict';
'require baseclass';
'require rpc';

/*
 * The LuCI side of iot-inspector's views: the rpc declarations of the
 * ubus object `iot-inspector` (served by `iot-inspector rpcd`), and the
 * loading of the rendering code shared with the standalone dashboard.
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */


/* name -> [declared call, its parameters in order] */
var calls = {
	status: [rpc.declare({ object: 'iot-inspector', method: 'status' }), []],
	devices: [rpc.declare({ object: 'iot-inspector', method: 'devices' }), []],
	flows: [rpc.declare({ object: 'iot-inspector', method: 'flows', params: ['device', 'since', 'until'] }), ['device', 'since', 'until']],
	parties: [rpc.declare({ object: 'iot-inspector', method: 'parties', params: ['device', 'since'] }), ['device', 'since']],
	series: [rpc.declare({ object: 'iot-inspector', method: 'series', params: ['device', 'since'] }), ['device', 'since']],
	alerts: [rpc.declare({ object: 'iot-inspector', method: 'alerts' }), []],
	rules: [rpc.declare({ object: 'iot-inspector', method: 'rules' }), []],
	catalogue: [rpc.declare({ object: 'iot-inspector', method: 'catalogue', params: ['q'] }), ['q']],
	label: [rpc.declare({ object: 'iot-inspector', method: 'label', params: ['mac', 'label'] }), ['mac', 'label']],
	confirm_label: [rpc.declare({ object: 'iot-inspector', method: 'confirm_label', params: ['mac'] }), ['mac']],
	block: [rpc.declare({ object: 'iot-inspector', method: 'block', params: ['mac'] }), ['mac']],
	unblock: [rpc.declare({ object: 'iot-inspector', method: 'unblock', params: ['mac'] }), ['mac']],
	pause: [rpc.declare({ object: 'iot-inspector', method: 'pause', params: ['mac', 'until'] }), ['mac', 'until']],
	set_rule: [rpc.declare({ object: 'iot-inspector', method: 'set_rule', params: ['device', 'schedule', 'away_mode', 'household', 'block_category', 'block_organisation', 'block_domain'] }),
		['device', 'schedule', 'away_mode', 'household', 'block_category', 'block_organisation', 'block_domain']],
	delete_rule: [rpc.declare({ object: 'iot-inspector', method: 'delete_rule', params: ['id'] }), ['id']]
};

/* The plugin wraps arrays as {result: [...]} and failures as {error}. */
function call(method, args) {
	var c = calls[method];
	if (!c) return Promise.reject(new Error('unknown method ' + method));
	args = args || {};
	return c[0].apply(null, c[1].map(function (p) { return args[p]; })).then(function (reply) {
		if (reply && typeof reply === 'object' && reply.error) throw new Error(reply.error);
		if (reply && typeof reply === 'object' && 'result' in reply && Object.keys(reply).length === 1) return reply.result;
		return reply;
	});
}

function href(view, arg) {
	var base = L.url('admin', 'services', 'iot-inspector', view);
	return view === 'device' ? base + '?mac=' + encodeURIComponent(arg) : base;
}

var loaded = null;

return baseclass.extend({
	/* render.js is a plain script (the dashboard loads it the same way). */
	ready: function () {
		if (loaded) return loaded;
		loaded = new Promise(function (resolve, reject) {
			if (window.IotInspector) return resolve(window.IotInspector);
			var css = document.createElement('link');
			css.rel = 'stylesheet';
			css.href = L.resource('iot-inspector/style.css');
			document.head.appendChild(css);
			var s = document.createElement('script');
			s.src = L.resource('iot-inspector/render.js');
			s.onload = function () { resolve(window.IotInspector); };
			s.onerror = function () { reject(new Error('cannot load iot-inspector/render.js')); };
			document.head.appendChild(s);
		});
		return loaded;
	},

	api: { call: call, href: href },

	/* mounts one of the shared views into a fresh node */
	mount: function (name, arg) {
		var node = E('div', { 'class': 'iot-luci' });
		var views = window.IotInspector.views;
		if (name === 'device') views.device(this.api, node, arg);
		else views[name](this.api, node);
		return node;
	}
});
