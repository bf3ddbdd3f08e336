/*
 * iot-inspector: the rendering code shared by the LuCI views and the
 * daemon's standalone dashboard. Plain modern JavaScript, no build step, no
 * third-party code.
 *
 * Safety rule: everything that comes from the network (device names, DHCP
 * host names, domains, labels) enters the page through textContent or
 * setAttribute on non-executable attributes, never through innerHTML, so a
 * device that calls itself `<img src=x onerror=alert(1)>` is shown as text.
 *
 * The views talk to the daemon through an `api` object given by the host
 * page: `api.call(method, args) -> Promise<value>` with the rpcd method
 * names (status, devices, flows, ...), and `api.href(view, arg)` for links.
 * LuCI builds it from rpc.declare (iot-inspector/luci.js); the dashboard
 * from fetch (dashboard.js).
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */
'use strict';

(function (root) {
	var SVG_NS = 'http://www.w3.org/2000/svg';

	/* ---------- DOM building ---------- */

	function append(node, child) {
		if (child == null || child === false) return;
		if (Array.isArray(child)) {
			child.forEach(function (c) { append(node, c); });
		} else if (child instanceof Node) {
			node.appendChild(child);
		} else {
			node.appendChild(document.createTextNode(String(child)));
		}
	}

	function setAttrs(node, attrs) {
		Object.keys(attrs || {}).forEach(function (k) {
			var v = attrs[k];
			if (v == null || v === false) return;
			if (k.slice(0, 2) === 'on' && typeof v === 'function') {
				node.addEventListener(k.slice(2), v);
			} else if (k === 'style') {
				/* CSSOM, not the attribute: the dashboard's CSP forbids inline style attributes */
				Object.keys(v).forEach(function (prop) { node.style[prop] = v[prop]; });
			} else if (k === 'class') {
				node.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
			} else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled') {
				node[k] = v;
			} else if (k === 'href' && !/^(#|\/|\?|[a-z]+\.html|https?:)/.test(String(v))) {
				/* only relative or http links: no javascript: from data */
				node.setAttribute('href', '#');
			} else {
				node.setAttribute(k, v === true ? '' : String(v));
			}
		});
	}

	/** h('div', {class: 'x'}, 'text', child, [more]) */
	function h(tag, attrs) {
		var node = document.createElement(tag);
		setAttrs(node, attrs);
		for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
		return node;
	}

	function s(tag, attrs) {
		var node = document.createElementNS(SVG_NS, tag);
		Object.keys(attrs || {}).forEach(function (k) {
			if (attrs[k] != null) node.setAttribute(k, String(attrs[k]));
		});
		for (var i = 2; i < arguments.length; i++) {
			var c = arguments[i];
			if (c == null) continue;
			if (c instanceof Node) node.appendChild(c);
			else node.appendChild(document.createTextNode(String(c)));
		}
		return node;
	}

	function clear(node) {
		while (node.firstChild) node.removeChild(node.firstChild);
		return node;
	}

	/* ---------- formatting ---------- */

	function bytes(n) {
		n = Number(n) || 0;
		var units = ['B', 'kB', 'MB', 'GB', 'TB'];
		var i = 0;
		while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
		return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
	}

	function rate(bytesPerSec) {
		return bytes(bytesPerSec) + '/s';
	}

	function clock(t, withDate) {
		if (!t) return '—';
		var d = new Date(t * 1000);
		var time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
		if (!withDate) return time;
		return d.toLocaleDateString([], { weekday: 'short', day: 'numeric', month: 'short' }) + ' ' + time;
	}

	function ago(t) {
		if (!t) return 'never';
		var d = Math.max(0, Math.round(Date.now() / 1000 - t));
		if (d < 60) return d + ' s ago';
		if (d < 3600) return Math.round(d / 60) + ' min ago';
		if (d < 86400) return Math.round(d / 3600) + ' h ago';
		return Math.round(d / 86400) + ' d ago';
	}

	function now() { return Math.floor(Date.now() / 1000); }

	function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

	/* ---------- devices ---------- */

	function identityName(d) {
		var id = d.identity;
		if (!id) return null;
		if (id.vendor && id.model) return id.vendor + ' ' + id.model;
		if (id.vendor && id.kind_label && id.kind !== 'unknown') return id.vendor + ' ' + id.kind_label;
		if (id.kind_label && id.kind !== 'unknown') return id.kind_label;
		return id.vendor || null;
	}

	/** The name people see: their label, else what identification says,
	 * else the name the device gave itself (as received: set as text only). */
	function deviceName(d) {
		if (!d) return 'Unknown device';
		return d.label || identityName(d) || (d.names && d.names.length ? d.names[0] : null) || ('Device ' + d.mac);
	}

	function confidenceText(c) {
		if (c == null) return '—';
		if (typeof c === 'string') return c;
		if (c >= 0.8) return 'high';
		if (c >= 0.5) return 'medium';
		return 'low';
	}

	function partyOf(flow) {
		var e = flow.explanation || {};
		return e.organisation || e.registrable || flow.name || flow.remote_ip || 'other';
	}

	var CATEGORIES = [
		['advertising', 'advertising'],
		['tracking_analytics', 'tracking and analytics'],
		['social', 'social network'],
		['streaming_media', 'streaming and media'],
		['voice_assistant', 'voice assistant'],
		['maps_location', 'maps and location'],
		['payments', 'payments'],
		['messaging', 'messaging and notifications'],
		['software_updates', 'software updates'],
		['vendor_cloud', "device maker's cloud"],
		['cdn_hosting', 'content delivery and hosting']
	];

	/* ---------- rules as the API gives them ---------- */

	var DAY_KEYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

	function hhmm(min) {
		var hh = Math.floor(min / 60), mm = min % 60;
		return (hh < 10 ? '0' : '') + hh + ':' + (mm < 10 ? '0' : '') + mm;
	}

	/** A schedule window as text ("mon-fri 21:00-07:00"), from text or {days, start, end}. */
	function windowText(w) {
		if (typeof w === 'string') return w;
		if (!w || !Array.isArray(w.days)) return '';
		var on = w.days.map(Boolean), days;
		var pick = DAY_KEYS.filter(function (k, i) { return on[i]; });
		if (pick.length === 7) days = 'daily';
		else if (pick.join() === 'mon,tue,wed,thu,fri') days = 'mon-fri';
		else days = pick.join(',');
		return days + ' ' + hhmm(w.start) + '-' + hhmm(w.end);
	}

	/** One rule with its fields in the shape the set_rule call takes. */
	function ruleFields(r) {
		var dest = r.destinations || {};
		var pause = r.pause_until;
		if (pause && typeof pause === 'object') pause = pause.unix || null;
		return {
			id: r.id, device: r.device, label: r.label, block: !!r.block, persist: !!r.persist,
			pause_until: pause || null,
			schedule: (r.schedule || []).map(windowText).filter(Boolean),
			away_mode: !!r.away_mode,
			block_category: r.block_category || dest.categories || [],
			block_organisation: r.block_organisation || dest.organisations || [],
			block_domain: r.block_domain || dest.domains || []
		};
	}

	function householdMacs(rules) {
		return (rules.household || []).map(function (x) { return typeof x === 'string' ? x : x.device; });
	}

	/* ---------- colours ---------- */

	var PALETTE = ['#2f6fde', '#e8743b', '#19a979', '#d64e7a', '#945ecf', '#13a4b4',
		'#c7a008', '#6c8893', '#ee6868', '#2f8f3a', '#a3641f', '#5a5fd6'];
	var OTHER_COLOUR = '#b9c0c8';

	function hash(str) {
		var x = 2166136261;
		for (var i = 0; i < str.length; i++) {
			x ^= str.charCodeAt(i);
			x = Math.imul(x, 16777619);
		}
		return x >>> 0;
	}

	/** Stable colours by name, distinct within one chart. */
	function colours(names) {
		var used = {}, out = {};
		names.forEach(function (n) {
			if (n === 'other parties') { out[n] = OTHER_COLOUR; return; }
			var i = hash(n) % PALETTE.length;
			for (var k = 0; k < PALETTE.length && used[i]; k++) i = (i + 1) % PALETTE.length;
			used[i] = true;
			out[n] = PALETTE[i];
		});
		return out;
	}

	/* ---------- charts ---------- */

	/**
	 * A stacked area chart of bytes per second over time, one layer per
	 * party (organisation). `series` is the API's {step, points}; `since`
	 * the start of the range (unix s). Missing windows count as zero.
	 */
	function trafficChart(series, opts) {
		opts = opts || {};
		var step = Math.max(1, series.step || 5);
		var end = opts.until || now();
		var start = opts.since || (end - 1200);
		var first = Math.floor(start / step) * step;
		var last = Math.floor(end / step) * step;
		var n = Math.max(2, Math.min(2000, Math.floor((last - first) / step) + 1));
		var byStart = {};
		(series.points || []).forEach(function (p) { byStart[p.start] = p; });

		/* the largest parties get their own layer, the rest one grey one */
		var totals = {};
		(series.points || []).forEach(function (p) {
			Object.keys(p.by_party || {}).forEach(function (k) {
				totals[k] = (totals[k] || 0) + p.by_party[k];
			});
		});
		var ranked = Object.keys(totals).sort(function (a, b) { return totals[b] - totals[a]; });
		var maxLayers = opts.layers || 8;
		var layers = ranked.slice(0, maxLayers);
		if (ranked.length > maxLayers) layers.push('other parties');
		var col = colours(layers);

		var values = []; /* values[i][layer] bytes/s */
		var peak = 0;
		for (var i = 0; i < n; i++) {
			var p = byStart[first + i * step];
			var row = layers.map(function () { return 0; });
			if (p) {
				Object.keys(p.by_party || {}).forEach(function (k) {
					var li = layers.indexOf(k);
					if (li < 0) li = layers.length - 1;
					row[li] += p.by_party[k] / step;
				});
			}
			var sum = row.reduce(function (a, b) { return a + b; }, 0);
			peak = Math.max(peak, sum);
			values.push(row);
		}
		var niceMax = niceCeil(peak || 1);

		/* drawn at the width it is shown at, so text keeps its size on a phone */
		var W = Math.round(Math.max(280, Math.min(1600, opts.width || 720)));
		var H = W < 500 ? 200 : 240, L = 64, R = 8, T = 10, B = 26;
		var pw = W - L - R, ph = H - T - B;
		var x = function (i) { return L + (n === 1 ? 0 : i * pw / (n - 1)); };
		var y = function (v) { return T + ph - v / niceMax * ph; };

		var svg = s('svg', {
			viewBox: '0 0 ' + W + ' ' + H, class: 'iot-chart', role: 'img',
			'aria-label': opts.title || 'Traffic over time by organisation'
		});
		/* grid and y labels */
		for (var g = 0; g <= 4; g++) {
			var gv = niceMax * g / 4, gy = y(gv);
			svg.appendChild(s('line', { x1: L, x2: W - R, y1: gy, y2: gy, class: 'grid' }));
			svg.appendChild(s('text', { x: L - 6, y: gy + 4, 'text-anchor': 'end', class: 'axis' }, rate(gv)));
		}
		/* x labels */
		var ticks = W < 500 ? 3 : 5;
		for (var t = 0; t <= ticks; t++) {
			var ti = Math.round((n - 1) * t / ticks);
			var when = first + ti * step;
			var label = (last - first) > 2 * 86400
				? new Date(when * 1000).toLocaleDateString([], { weekday: 'short', day: 'numeric', month: 'short' })
				: clock(when);
			svg.appendChild(s('text', {
				x: x(ti), y: H - 6,
				'text-anchor': t === 0 ? 'start' : (t === ticks ? 'end' : 'middle'), class: 'axis'
			}, label));
		}
		/* layers, bottom to top */
		var base = values.map(function () { return 0; });
		layers.forEach(function (name, li) {
			var top = values.map(function (row, i) { return base[i] + row[li]; });
			var d = 'M' + x(0) + ',' + y(top[0]);
			for (var i = 1; i < n; i++) d += 'L' + x(i).toFixed(1) + ',' + y(top[i]).toFixed(1);
			for (var j = n - 1; j >= 0; j--) d += 'L' + x(j).toFixed(1) + ',' + y(base[j]).toFixed(1);
			d += 'Z';
			var path = s('path', { d: d, fill: col[name], class: 'layer', 'data-party': name });
			var total = name === 'other parties'
				? ranked.slice(maxLayers).reduce(function (a, k) { return a + totals[k]; }, 0)
				: totals[name];
			path.appendChild(s('title', {}, name + ': ' + bytes(total)));
			svg.appendChild(path);
			base = top;
		});
		/* hover columns: what was exchanged in each window, by party */
		var colW = pw / Math.max(1, n - 1);
		for (var k = 0; k < n; k++) {
			var row = values[k];
			var sum = row.reduce(function (a, b) { return a + b; }, 0);
			if (!sum) continue;
			var lines = [clock(first + k * step, step >= 3600)];
			layers.forEach(function (name, li) {
				if (row[li] > 0) lines.push(name + ': ' + rate(row[li]));
			});
			var rect = s('rect', {
				x: Math.max(L, x(k) - colW / 2), y: T, width: Math.max(1, colW), height: ph,
				class: 'hover'
			});
			rect.appendChild(s('title', {}, lines.join('\n')));
			svg.appendChild(rect);
		}
		if (!ranked.length) {
			svg.appendChild(s('text', { x: L + pw / 2, y: T + ph / 2, 'text-anchor': 'middle', class: 'empty' },
				'No traffic in this range yet'));
		}

		var legend = h('ul', { class: 'iot-legend' }, layers.map(function (name) {
			var total = name === 'other parties'
				? ranked.slice(maxLayers).reduce(function (a, k) { return a + totals[k]; }, 0)
				: totals[name];
			return h('li', { title: name + ': ' + bytes(total) },
				h('span', { class: 'swatch', style: { background: col[name] } }), name,
				h('span', { class: 'muted' }, ' ' + bytes(total)));
		}));
		return h('figure', { class: 'iot-figure' }, svg, legend);
	}

	function niceCeil(v) {
		var p = Math.pow(10, Math.floor(Math.log10(v)));
		var m = v / p;
		var nice = m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10;
		return nice * p;
	}

	/** A list of labelled horizontal bars: items [{label, value, sub, href, colour}]. */
	function barList(items, opts) {
		opts = opts || {};
		if (!items.length) return h('p', { class: 'muted' }, opts.empty || 'Nothing yet.');
		var max = Math.max.apply(null, items.map(function (i) { return i.value; })) || 1;
		return h('ul', { class: 'iot-bars' }, items.map(function (it) {
			var name = it.href ? h('a', { href: it.href }, it.label) : h('span', {}, it.label);
			return h('li', { title: it.title || null },
				h('div', { class: 'bar-head' }, h('span', { class: 'bar-label' }, name),
					h('span', { class: 'bar-value' }, (opts.format || bytes)(it.value))),
				h('div', { class: 'bar-track' },
					h('div', { class: 'bar-fill', style: { width: Math.max(1, 100 * it.value / max).toFixed(1) + '%', background: it.colour || PALETTE[0] } })),
				it.sub ? h('div', { class: 'bar-sub muted' }, it.sub) : null);
		}));
	}

	/* ---------- page pieces ---------- */

	function card(title, body, extra) {
		return h('section', { class: 'iot-card' }, h('div', { class: 'card-head' }, h('h3', {}, title), extra || null), body);
	}

	function errorText(e) {
		if (!e) return 'unknown error';
		return e.message || String(e);
	}

	/** A card whose body fills in when `promise` settles (errors shown in it). */
	function pending(title, promise, render, extra) {
		var body = h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading…'));
		promise.then(function (v) {
			clear(body);
			append(body, render(v));
		}, function (e) {
			clear(body);
			body.appendChild(h('p', { class: 'iot-error' }, 'Not available: ' + errorText(e)));
		});
		return card(title, body, extra);
	}

	function badge(text, kind) {
		return h('span', { class: 'badge ' + (kind || '') }, text);
	}

	function onlineBadge(d) {
		return d.online ? badge('online', 'ok') : badge('offline ' + ago(d.last_seen), 'off');
	}

	function table(head, rows, cls) {
		return h('div', { class: 'table-wrap' }, h('table', { class: 'iot-table ' + (cls || '') },
			h('thead', {}, h('tr', {}, head.map(function (c) { return h('th', {}, c); }))),
			h('tbody', {}, rows)));
	}

	function notice(node, text, kind) {
		var n = h('div', { class: 'iot-notice ' + (kind || '') }, text);
		node.insertBefore(n, node.firstChild);
		setTimeout(function () { if (n.parentNode) n.parentNode.removeChild(n); }, 6000);
	}

	/* ---------- Overview ---------- */

	function overview(api, container) {
		var timer = null;
		var chartBody = h('div', { class: 'card-body', id: 'overview-chart' }, h('p', { class: 'muted' }, 'Loading…'));
		var statusLine = h('p', { class: 'muted', id: 'overview-status' });
		var devicesP = api.call('devices');
		var names = {};

		function drawChart() {
			var since = now() - 1200;
			return api.call('series', { since: '20m' }).then(function (ser) {
				clear(chartBody).appendChild(trafficChart(ser, { since: since, width: chartBody.clientWidth, title: 'All devices, last 20 minutes' }));
			}, function (e) {
				clear(chartBody).appendChild(h('p', { class: 'iot-error' }, 'Not available: ' + errorText(e)));
			});
		}

		function drawStatus() {
			return Promise.all([api.call('status'), devicesP.catch(function () { return []; })]).then(function (r) {
				var st = r[0], devs = r[1];
				var online = devs.filter(function (d) { return d.online; }).length;
				clear(statusLine).appendChild(document.createTextNode(
					plural(devs.length, 'device') + ' (' + online + ' online) · ' + plural(st.flows_live || 0, 'live flow') + ' · iot-inspector ' + (st.version || '')));
			}, function (e) { statusLine.textContent = 'Daemon not reachable: ' + errorText(e); });
		}

		var root = h('div', { class: 'iot-view iot-overview' },
			h('h2', {}, 'Network overview'), statusLine,
			card('Traffic of all devices, last 20 minutes', chartBody, h('span', { class: 'live' }, 'live')),
			h('div', { class: 'iot-grid' },
				pending('Who the network talks to (last hour)', api.call('parties', { since: '1h' }), function (p) {
					return barList(p.parties.slice(0, 12).map(function (x, i) {
						return {
							label: x.party, value: x.bytes_up + x.bytes_down,
							sub: x.category_label + ' · ' + plural(x.devices.length, 'device'),
							title: x.description, colour: PALETTE[hash(x.party) % PALETTE.length]
						};
					}), { empty: 'No traffic in the last hour.' });
				}),
				pending('By purpose (last hour)', api.call('parties', { since: '1h' }), function (p) {
					return barList(p.categories.map(function (c) {
						return { label: c.label, value: c.bytes_up + c.bytes_down, colour: c.category === 'advertising' || c.category === 'tracking_analytics' ? '#d64e7a' : '#19a979' };
					}), { empty: 'No traffic in the last hour.' });
				})),
			pending('Alerts worth a look', Promise.all([api.call('alerts'), devicesP.catch(function () { return []; })]), function (r) {
				var alerts = r[0] || [];
				r[1].forEach(function (d) { names[d.mac] = deviceName(d); });
				if (!alerts.length) return h('p', { class: 'muted' }, 'Nothing unusual.');
				return h('ul', { class: 'iot-alerts' }, alerts.slice().reverse().slice(0, 30).map(function (a) {
					return h('li', { class: 'alert-' + a.kind },
						badge(a.kind === 'new_device' ? 'new device' : a.kind === 'tracking' ? 'tracking' : a.kind, a.kind === 'tracking' ? 'warn' : 'info'),
						' ', h('a', { href: api.href('device', a.device) }, names[a.device] || a.device),
						': ', a.text, ' ', h('span', { class: 'muted' }, ago(a.at)));
				}));
			}),
			pending('Devices', devicesP, function (devs) {
				return barList(devs.slice().sort(function (a, b) {
					return (b.bytes_up + b.bytes_down) - (a.bytes_up + a.bytes_down);
				}).slice(0, 10).map(function (d) {
					return {
						label: deviceName(d), value: d.bytes_up + d.bytes_down, href: api.href('device', d.mac),
						sub: (d.online ? 'online' : 'offline') + ' · ' + d.mac
					};
				}), { empty: 'No devices seen yet.' });
			}, h('a', { href: api.href('devices') }, 'all devices')));

		container.appendChild(root);
		drawStatus();
		drawChart();
		timer = setInterval(function () { drawChart(); drawStatus(); }, 5000);
		return { node: root, stop: function () { clearInterval(timer); } };
	}

	/* ---------- Devices ---------- */

	function labelEditor(api, d, done) {
		var listId = 'catalogue-' + d.mac.replace(/:/g, '');
		var input = h('input', {
			type: 'text', class: 'label-input', list: listId, maxlength: 64,
			placeholder: 'e.g. Kitchen camera or a product', value: d.label || ''
		});
		var list = h('datalist', { id: listId });
		var pendingQ = null;
		input.addEventListener('input', function () {
			clearTimeout(pendingQ);
			pendingQ = setTimeout(function () {
				api.call('catalogue', { q: input.value }).then(function (items) {
					clear(list);
					(items || []).slice(0, 20).forEach(function (p) {
						list.appendChild(h('option', { value: p.vendor + ' ' + p.product }, p.kind || ''));
					});
				}, function () { /* no catalogue: free text only */ });
			}, 250);
		});
		var form = h('form', { class: 'label-form' }, input, list,
			h('button', { type: 'submit', class: 'btn primary save-label' }, 'Save name'),
			h('button', { type: 'button', class: 'btn', onclick: function () { done(false); } }, 'Cancel'));
		form.addEventListener('submit', function (ev) {
			ev.preventDefault();
			api.call('label', { mac: d.mac, label: input.value.trim() }).then(function () { done(true); },
				function (e) { notice(form, 'Could not save: ' + errorText(e), 'error'); });
		});
		return form;
	}

	function devicesView(api, container) {
		var state = { q: '', sort: 'traffic', online: false, editing: null };
		var devices = [], traffic = {};
		var body = h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading…'));
		var count = h('span', { class: 'muted' });

		function load() {
			return Promise.all([api.call('devices'), api.call('flows', { since: '1h' }).catch(function () { return []; })])
				.then(function (r) {
					devices = r[0];
					traffic = {};
					r[1].forEach(function (f) {
						var t = traffic[f.device] || (traffic[f.device] = { bytes: 0, parties: {} });
						var b = f.bytes_up + f.bytes_down;
						t.bytes += b;
						var p = partyOf(f);
						t.parties[p] = (t.parties[p] || 0) + b;
					});
					draw();
				}, function (e) {
					clear(body).appendChild(h('p', { class: 'iot-error' }, 'Not available: ' + errorText(e)));
				});
		}

		function top(mac) {
			var t = traffic[mac];
			if (!t) return [];
			return Object.keys(t.parties).sort(function (a, b) { return t.parties[b] - t.parties[a]; }).slice(0, 3);
		}

		function draw() {
			var q = state.q.toLowerCase();
			var list = devices.filter(function (d) {
				if (state.online && !d.online) return false;
				if (!q) return true;
				var id = d.identity || {};
				return [deviceName(d), id.vendor, id.kind_label, id.model, d.mac].concat(d.ips || [])
					.some(function (v) { return v && String(v).toLowerCase().indexOf(q) >= 0; });
			});
			var recent = function (d) { return (traffic[d.mac] || {}).bytes || 0; };
			var sorters = {
				name: function (a, b) { return deviceName(a).localeCompare(deviceName(b)); },
				traffic: function (a, b) { return recent(b) - recent(a) || (b.bytes_up + b.bytes_down) - (a.bytes_up + a.bytes_down); },
				seen: function (a, b) { return b.last_seen - a.last_seen; },
				vendor: function (a, b) { return String((a.identity || {}).vendor || '~').localeCompare(String((b.identity || {}).vendor || '~')); }
			};
			list.sort(sorters[state.sort] || sorters.traffic);
			count.textContent = list.length + ' of ' + devices.length;
			var rows = [];
			list.forEach(function (d) {
				var id = d.identity || {};
				rows.push(h('tr', { class: 'device-row', 'data-mac': d.mac },
					h('td', { 'data-th': 'Name', class: 'name-cell' }, h('a', { class: 'device-name', href: api.href('device', d.mac) }, deviceName(d)),
						h('div', { class: 'muted small' }, d.mac + (d.ips && d.ips.length ? ' · ' + d.ips[0] : ''))),
					h('td', { 'data-th': 'Kind' }, id.kind_label || '—'),
					h('td', { 'data-th': 'Vendor' }, id.vendor || '—'),
					h('td', { 'data-th': 'Confidence' }, confidenceText(id.confidence)),
					h('td', { 'data-th': 'State' }, onlineBadge(d)),
					h('td', { 'data-th': 'Last hour', class: 'num recent-bytes' }, bytes(recent(d))),
					h('td', { 'data-th': 'Talks to', class: 'small' }, top(d.mac).join(', ') || '—'),
					h('td', { 'data-th': '' }, h('button', {
						type: 'button', class: 'btn label-btn',
						onclick: function () { state.editing = state.editing === d.mac ? null : d.mac; draw(); }
					}, 'Name…'))));
				if (state.editing === d.mac) {
					rows.push(h('tr', { class: 'edit-row' }, h('td', { colspan: 8 }, labelEditor(api, d, function (saved) {
						state.editing = null;
						if (saved) load(); else draw();
					}))));
				}
			});
			clear(body).appendChild(list.length
				? table(['Name', 'Kind', 'Vendor', 'Confidence', 'State', 'Last hour', 'Talks to', ''], rows, 'devices')
				: h('p', { class: 'muted' }, devices.length ? 'No device matches.' : 'No devices seen yet.'));
		}

		var filter = h('input', { type: 'search', class: 'filter', placeholder: 'Filter by name, vendor, address…' });
		filter.addEventListener('input', function () { state.q = filter.value; draw(); });
		var sort = h('select', { class: 'sort' },
			h('option', { value: 'traffic' }, 'Most traffic'), h('option', { value: 'name' }, 'Name'),
			h('option', { value: 'seen' }, 'Last seen'), h('option', { value: 'vendor' }, 'Vendor'));
		sort.addEventListener('change', function () { state.sort = sort.value; draw(); });
		var online = h('input', { type: 'checkbox', class: 'online-only' });
		online.addEventListener('change', function () { state.online = online.checked; draw(); });
		var root = h('div', { class: 'iot-view iot-devices' }, h('h2', {}, 'Devices'),
			h('div', { class: 'toolbar' }, filter, sort, h('label', {}, online, ' online only'), count),
			card('Every device on the network', body));
		container.appendChild(root);
		load();
		return { node: root, stop: function () { } };
	}

	/* ---------- Device ---------- */

	var RANGES = [['20m', '20 min', 1200], ['1h', '1 hour', 3600], ['24h', '24 hours', 86400], ['7d', '7 days', 604800]];
	var DAY_CHOICES = [['daily', 'Every day'], ['mon-fri', 'Mon–Fri'], ['sat,sun', 'Sat–Sun'],
		['mon', 'Mon'], ['tue', 'Tue'], ['wed', 'Wed'], ['thu', 'Thu'], ['fri', 'Fri'], ['sat', 'Sat'], ['sun', 'Sun']];

	function scheduleRow(text) {
		var days = 'mon-fri', from = '21:00', to = '07:00';
		var m = /^\s*(.+?)\s+(\d{1,2}:\d{2})-(\d{1,2}:\d{2})\s*$/.exec(text || '');
		if (m) { days = m[1]; from = m[2]; to = m[3]; }
		var sel = h('select', { class: 'sched-days' }, DAY_CHOICES.map(function (c) { return h('option', { value: c[0] }, c[1]); }));
		if (!DAY_CHOICES.some(function (c) { return c[0] === days; })) sel.appendChild(h('option', { value: days }, days));
		sel.value = days;
		var row = h('div', { class: 'sched-row' }, sel,
			h('input', { type: 'text', class: 'sched-from', value: from, size: 5, inputmode: 'numeric', pattern: '\\d{1,2}:\\d{2}', 'aria-label': 'from' }),
			h('span', {}, '–'),
			h('input', { type: 'text', class: 'sched-to', value: to, size: 5, inputmode: 'numeric', pattern: '\\d{1,2}:\\d{2}', 'aria-label': 'until' }),
			h('button', { type: 'button', class: 'btn small', title: 'Remove', onclick: function () { row.parentNode.removeChild(row); } }, '✕'));
		return row;
	}

	function controls(api, mac, d, rulesP, partiesP, devicesP, refresh) {
		var body = h('div', { class: 'card-body controls' }, h('p', { class: 'muted' }, 'Loading…'));
		Promise.all([rulesP, partiesP.catch(function () { return { parties: [] }; }), devicesP]).then(function (r) {
			var rules = r[0], parties = r[1], devs = r[2];
			var mine = (rules.rules || []).map(ruleFields).filter(function (x) { return x.device === mac; });
			var states = (rules.states || []).filter(function (x) { return x.device === mac; });
			var rule = mine.filter(function (x) { return (x.schedule && x.schedule.length) || x.away_mode ||
				(x.block_category || []).length || (x.block_organisation || []).length || (x.block_domain || []).length; })[0] || {};
			var blocked = states.filter(function (x) { return x.blocked && !x.destinations; });
			var destBlocked = states.filter(function (x) { return x.blocked && x.destinations; });
			/* when blocked, when the block ends; when allowed, when a rule starts */
			var next = (blocked.length ? blocked : states).map(function (x) { return x.next_change; })
				.filter(Boolean).sort(function (a, b) { return a - b; })[0];
			clear(body);
			if (rules.clock_unset) body.appendChild(h('p', { class: 'iot-error' }, 'The router\'s clock is not set yet: schedules keep their last state.'));
			body.appendChild(h('p', { class: 'state-now' },
				blocked.length ? badge('blocked', 'bad') : badge('allowed', 'ok'), ' ',
				blocked.length ? blocked.map(function (x) { return x.reason; }).join('; ') : 'Internet access is allowed now.',
				destBlocked.length ? h('span', {}, ' · some destinations blocked: ' + destBlocked.map(function (x) { return x.reason; }).join('; ')) : null,
				next ? h('span', { class: 'muted' }, ' · next change ' + clock(next, true)) : null));

			function act(method, args, what) {
				return api.call(method, args).then(function () { refresh(what); },
					function (e) { notice(body, 'Could not change it: ' + errorText(e), 'error'); });
			}
			var tomorrow7 = new Date(); tomorrow7.setDate(tomorrow7.getDate() + 1); tomorrow7.setHours(7, 0, 0, 0);
			body.appendChild(h('div', { class: 'actions' },
				blocked.length
					? h('button', { type: 'button', class: 'btn primary unblock-btn', onclick: function () { act('unblock', { mac: mac }, 'Unblocked.'); } }, 'Unblock')
					: h('button', { type: 'button', class: 'btn danger block-btn', onclick: function () { act('block', { mac: mac }, 'Blocked.'); } }, 'Block now'),
				h('button', { type: 'button', class: 'btn pause-btn', onclick: function () { act('pause', { mac: mac, until: now() + 3600 }, 'Paused for an hour.'); } }, 'Pause 1 hour'),
				h('button', { type: 'button', class: 'btn', onclick: function () { act('pause', { mac: mac, until: Math.floor(tomorrow7.getTime() / 1000) }, 'Paused until tomorrow 07:00.'); } }, 'Pause until 07:00')));

			var schedList = h('div', { class: 'sched-list' }, (rule.schedule || []).map(scheduleRow));
			var away = h('input', { type: 'checkbox', class: 'away-mode', checked: !!rule.away_mode });
			var household = householdMacs(rules);
			var houseBoxes = devs.filter(function (x) { return x.mac !== mac; }).map(function (x) {
				return h('label', { class: 'check' }, h('input', { type: 'checkbox', class: 'household', value: x.mac, checked: household.indexOf(x.mac) >= 0 }), ' ', deviceName(x));
			});
			var cats = CATEGORIES.map(function (c) {
				return h('label', { class: 'check' }, h('input', { type: 'checkbox', class: 'block-category', value: c[0], checked: (rule.block_category || []).indexOf(c[0]) >= 0 }), ' ', c[1]);
			});
			var orgNames = {};
			(rule.block_organisation || []).forEach(function (o) { orgNames[o] = true; });
			(parties.parties || []).forEach(function (p) { if (p.organisation) orgNames[p.organisation] = true; });
			var orgs = Object.keys(orgNames).sort().map(function (o) {
				return h('label', { class: 'check' }, h('input', { type: 'checkbox', class: 'block-organisation', value: o, checked: (rule.block_organisation || []).indexOf(o) >= 0 }), ' ', o);
			});
			var domains = h('input', { type: 'text', class: 'block-domain', value: (rule.block_domain || []).join(', '), placeholder: 'e.g. doubleclick.net, ads.example' });
			var form = h('form', { class: 'rule-form' },
				h('h4', {}, 'Blocked times'),
				h('p', { class: 'muted small' }, 'The device has no internet in these weekly windows (router time). An end before the start runs into the next day.'),
				schedList,
				h('button', { type: 'button', class: 'btn add-window', onclick: function () { schedList.appendChild(scheduleRow('')); } }, '+ Add a time'),
				h('h4', {}, 'Away mode'),
				h('label', { class: 'check' }, away, ' Cut this device off while anyone in the household is home (for indoor cameras)'),
				h('div', { class: 'muted small' }, 'Household phones:'), h('div', { class: 'checks' }, houseBoxes.length ? houseBoxes : h('span', { class: 'muted' }, 'no other devices')),
				h('h4', {}, 'Blocked destinations'),
				h('div', { class: 'checks' }, cats),
				orgs.length ? h('div', { class: 'muted small' }, 'Organisations it talks to:') : null,
				h('div', { class: 'checks' }, orgs),
				h('label', { class: 'block' }, 'Domains ', domains),
				h('div', { class: 'actions' },
					h('button', { type: 'submit', class: 'btn primary save-rule' }, 'Save rules'),
					rule.id ? h('button', { type: 'button', class: 'btn danger delete-rule', onclick: function () { act('delete_rule', { id: rule.id }, 'Rule removed.'); } }, 'Remove rule') : null));
			form.addEventListener('submit', function (ev) {
				ev.preventDefault();
				var sched = [], bad = null;
				schedList.querySelectorAll('.sched-row').forEach(function (row) {
					var from = row.querySelector('.sched-from').value.trim(), to = row.querySelector('.sched-to').value.trim();
					if (!/^\d{1,2}:\d{2}$/.test(from) || !/^\d{1,2}:\d{2}$/.test(to)) bad = 'Times are written like 21:00.';
					sched.push(row.querySelector('.sched-days').value + ' ' + from + '-' + to);
				});
				if (bad) { notice(body, bad, 'error'); return; }
				var checked = function (cls) {
					return Array.prototype.map.call(form.querySelectorAll('input.' + cls + ':checked'), function (i) { return i.value; });
				};
				act('set_rule', {
					device: mac, schedule: sched, away_mode: away.checked, household: checked('household'),
					block_category: checked('block-category'), block_organisation: checked('block-organisation'),
					block_domain: domains.value.split(/[\s,]+/).filter(Boolean)
				}, 'Rules saved.');
			});
			body.appendChild(form);
		}, function (e) {
			clear(body).appendChild(h('p', { class: 'iot-error' }, 'Rules not available: ' + errorText(e)));
		});
		return card('Block, pause, schedule', body);
	}

	function deviceView(api, container, mac) {
		var root = h('div', { class: 'iot-view iot-device' });
		var range = '20m', timer = null;
		container.appendChild(root);

		/* `flash`: what the last change did. The daemon applies a change
		 * when it has reloaded its configuration, so the state is read
		 * again shortly after. */
		function changed(flash) {
			draw(flash);
			setTimeout(function () { if (root.isConnected) draw(flash); }, 1500);
		}

		function draw(flash) {
			clear(root);
			clearInterval(timer);
			var devicesP = api.call('devices');
			var rulesP = api.call('rules');
			var partiesP = api.call('parties', { device: mac, since: range === '20m' ? '1h' : range });
			var title = h('h2', { class: 'device-title' }, 'Device');
			var facts = h('div', { class: 'facts' });
			var chartBody = h('div', { class: 'card-body', id: 'device-chart' }, h('p', { class: 'muted' }, 'Loading…'));
			var span = RANGES.filter(function (r) { return r[0] === range; })[0][2];
			function drawChart() {
				var since = now() - span;
				api.call('series', { device: mac, since: range }).then(function (ser) {
					clear(chartBody).appendChild(trafficChart(ser, { since: since, width: chartBody.clientWidth, title: 'Traffic by organisation' }));
				}, function (e) { clear(chartBody).appendChild(h('p', { class: 'iot-error' }, 'Not available: ' + errorText(e))); });
			}
			var ranges = h('div', { class: 'ranges', role: 'group' }, RANGES.map(function (r) {
				return h('button', { type: 'button', class: ['btn', 'range', r[0] === range ? 'active' : null], 'data-range': r[0],
					onclick: function () { range = r[0]; draw(); } }, r[1]);
			}));
			var evidence = h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading…'));
			var labelBox = h('div', { class: 'label-box' });
			devicesP.then(function (devs) {
				var d = devs.filter(function (x) { return x.mac === mac; })[0];
				if (!d) { title.textContent = 'No device ' + mac; return; }
				title.textContent = deviceName(d);
				var id = d.identity || {};
				clear(facts);
				append(facts, [
					onlineBadge(d), ' ',
					h('span', {}, [id.kind_label, id.vendor, id.model].filter(Boolean).join(' · ') || 'not identified yet'),
					id.confidence != null ? h('span', { class: 'muted' }, ' · ' + confidenceText(id.confidence) + ' confidence') : null,
					h('div', { class: 'muted small' }, d.mac + ' · ' + (d.ips || []).join(', ') + ' · first seen ' + clock(d.first_seen, true)),
					h('div', { class: 'small' }, 'In total: ' + bytes(d.bytes_up) + ' sent, ' + bytes(d.bytes_down) + ' received')]);
				var lab = h('button', { type: 'button', class: 'btn label-btn', onclick: function () {
					clear(labelBox).appendChild(labelEditor(api, d, function (saved) { if (saved) draw('Name saved.'); else clear(labelBox); }));
				} }, d.label ? 'Rename' : 'Name this device');
				facts.appendChild(lab);
				// A label that contradicts the evidence: say why, let the
				// owner keep it or fix it.
				if (d.label_warnings && d.label_warnings.length) {
					facts.appendChild(h('div', { class: 'iot-error label-warnings' },
						h('strong', {}, 'Is this name right? '),
						h('ul', {}, d.label_warnings.map(function (w) {
							return h('li', {}, w.text, (w.evidence && w.evidence.length)
								? h('div', { class: 'muted small' }, 'Evidence: ' + w.evidence.join(' · ')) : null);
						})),
						h('button', { type: 'button', class: 'btn confirm-label', onclick: function () {
							api.call('confirm_label', { mac: mac }).then(function () { draw('Name kept.'); },
								function (e) { title.textContent = 'Could not keep the name: ' + errorText(e); });
						} }, 'The name is right'), ' ',
						h('button', { type: 'button', class: 'btn fix-label', onclick: function () {
							clear(labelBox).appendChild(labelEditor(api, d, function (saved) { if (saved) draw('Name saved.'); else clear(labelBox); }));
						} }, 'Fix the name')));
				}
				// No label yet: the likeliest products, one click to accept.
				if (!d.label && d.suggestions && d.suggestions.length) {
					facts.appendChild(h('div', { class: 'suggestions' },
						h('strong', {}, 'Could it be: '),
						d.suggestions.map(function (sg) {
							var p = sg.product || {};
							var name = (p.product || '').toLowerCase().indexOf((p.vendor || '').toLowerCase()) === 0
								? p.product : [p.vendor, p.product].filter(Boolean).join(' ');
							return h('div', { class: 'suggestion' },
								h('button', { type: 'button', class: 'btn accept-suggestion', onclick: function () {
									api.call('label', { mac: mac, label: name }).then(function () { draw('Name saved.'); },
										function (e) { title.textContent = 'Could not save: ' + errorText(e); });
								} }, name), ' ',
								h('span', { class: 'muted small' }, (sg.because || []).join(' · ')));
						})));
				}
				clear(evidence);
				if (d.names && d.names.length)
					evidence.appendChild(h('p', { class: 'self-names' }, 'It calls itself: ', h('span', { class: 'mono' }, d.names.join(' · '))));
				var ev = id.evidence || [];
				evidence.appendChild(ev.length
					? table(['Seen', 'Value', 'Suggests', 'Weight'], ev.map(function (e) {
						return h('tr', {}, h('td', { 'data-th': 'Seen' }, e.source), h('td', { 'data-th': 'Value', class: 'mono' }, e.value),
							h('td', { 'data-th': 'Suggests' }, e.suggests), h('td', { 'data-th': 'Weight', class: 'num' }, e.weight == null ? '' : String(e.weight)));
					}), 'evidence')
					: h('p', { class: 'muted' }, 'No identifying evidence yet (DHCP, mDNS, SSDP, the services it uses).'));
			}, function (e) { title.textContent = 'Device ' + mac; facts.textContent = 'Not available: ' + errorText(e); });

			append(root, [
				h('p', { class: 'crumbs' }, h('a', { href: api.href('devices') }, '← all devices')),
				flash ? h('div', { class: 'iot-notice ok' }, flash) : null,
				title, facts, labelBox,
				card('Traffic over time, by organisation', chartBody, ranges),
				h('div', { class: 'iot-grid' },
					pending('Whom it talks to', partiesP, function (p) {
						if (!p.parties.length) return h('p', { class: 'muted' }, 'No traffic in this range.');
						return h('ul', { class: 'parties' }, p.parties.slice(0, 30).map(function (x) {
							return h('li', { class: 'party' },
								h('div', { class: 'bar-head' }, h('strong', {}, x.party), h('span', { class: 'bar-value' }, bytes(x.bytes_up) + ' ↑ ' + bytes(x.bytes_down) + ' ↓')),
								h('div', {}, badge(x.category_label, x.category === 'advertising' || x.category === 'tracking_analytics' ? 'warn' : 'info'),
									x.expected === false ? badge('unexpected', 'bad') : null, ' ', x.description),
								x.names && x.names.length ? h('div', { class: 'muted small mono' }, x.names.slice(0, 5).join(', ')) : null);
						}));
					}),
					controls(api, mac, null, rulesP, partiesP, devicesP, changed)),
				card('Why we think it is this device', evidence)]);
			drawChart();
			if (range === '20m') timer = setInterval(drawChart, 5000);
		}
		draw();
		return { node: root, stop: function () { clearInterval(timer); } };
	}

	/* ---------- Rules ---------- */

	function rulesView(api, container) {
		var root = h('div', { class: 'iot-view iot-rules' }, h('h2', {}, 'Rules'));
		var rulesP = api.call('rules');
		var names = {};
		var devicesP = api.call('devices').then(function (devs) {
			devs.forEach(function (d) { names[d.mac] = deviceName(d); });
		}, function () { });
		var both = Promise.all([rulesP, devicesP]).then(function (r) { return r[0]; });
		var nameOf = function (mac, fallback) { return fallback || names[mac] || mac; };
		function what(r) {
			var parts = [];
			if (r.block) parts.push('blocked');
			if (r.pause_until) parts.push('paused until ' + clock(r.pause_until, true));
			(r.schedule || []).forEach(function (x) { parts.push('schedule ' + x); });
			if (r.away_mode) parts.push('away mode');
			var dest = [].concat(r.block_category || [], r.block_organisation || [], r.block_domain || []);
			if (dest.length) parts.push('destinations: ' + dest.join(', '));
			return parts.join(' · ') || '—';
		}
		append(root, [
			pending('Rules in force', both, function (rules) {
				var list = (rules.rules || []).map(ruleFields);
				var box = h('div', {});
				if (rules.clock_unset) box.appendChild(h('p', { class: 'iot-error' }, 'The router\'s clock is not set yet: rules keep their last state.'));
				if (rules.config_error) box.appendChild(h('p', { class: 'iot-error' }, 'The configuration has an error, the last good rules run: ' + rules.config_error));
				if (rules.enforce_error) box.appendChild(h('p', { class: 'iot-error' }, 'The last change could not be applied: ' + rules.enforce_error));
				box.appendChild(list.length ? table(['Device', 'Rule', 'What', 'Persists', ''], list.map(function (r) {
					return h('tr', { class: 'rule-row', 'data-rule': r.id },
						h('td', { 'data-th': 'Device' }, h('a', { href: api.href('device', r.device) }, nameOf(r.device))),
						h('td', { 'data-th': 'Rule' }, r.label || r.id),
						h('td', { 'data-th': 'What', class: 'rule-what' }, what(r)),
						h('td', { 'data-th': 'Persists' }, r.persist ? 'yes' : 'no'),
						h('td', {}, h('button', { type: 'button', class: 'btn small danger', onclick: function () {
							api.call('delete_rule', { id: r.id }).then(function () { clear(container); rulesView(api, container); },
								function (e) { notice(root, 'Could not remove it: ' + errorText(e), 'error'); });
						} }, 'Remove')));
				})) : h('p', { class: 'muted' }, 'No rules yet. Open a device to block it or give it a schedule.'));
				return box;
			}),
			pending('State now', both, function (rules) {
				var st = rules.states || [];
				if (!st.length) return h('p', { class: 'muted' }, 'Nothing is blocked.');
				return table(['Device', 'State', 'Why', 'Next change'], st.map(function (x) {
					return h('tr', { class: 'state-row' },
						h('td', { 'data-th': 'Device' }, h('a', { href: api.href('device', x.device) }, nameOf(x.device, x.device_name))),
						h('td', { 'data-th': 'State' }, x.blocked ? badge(x.destinations ? 'some blocked' : 'blocked', 'bad') : badge('allowed', 'ok')),
						h('td', { 'data-th': 'Why' }, x.reason),
						h('td', { 'data-th': 'Next change' }, x.next_change ? clock(x.next_change, true) : '—'));
				}));
			}),
			pending('History', both, function (rules) {
				var hist = (rules.history || []).slice().reverse();
				if (!hist.length) return h('p', { class: 'muted' }, 'No changes yet.');
				return table(['When', 'Device', 'Change', 'Why'], hist.slice(0, 100).map(function (x) {
					return h('tr', {}, h('td', { 'data-th': 'When' }, clock(x.at, true)),
						h('td', { 'data-th': 'Device' }, nameOf(x.device, x.device_name)),
						h('td', { 'data-th': 'Change' }, x.blocked ? 'blocked' : 'allowed'),
						h('td', { 'data-th': 'Why' }, x.reason));
				}));
			})]);
		container.appendChild(root);
		return { node: root, stop: function () { } };
	}

	root.IotInspector = {
		h: h, svg: s, clear: clear,
		format: { bytes: bytes, rate: rate, clock: clock, ago: ago },
		deviceName: deviceName, trafficChart: trafficChart, barList: barList,
		views: { overview: overview, devices: devicesView, device: deviceView, rules: rulesView }
	};
})(typeof window !== 'undefined' ? window : this);
