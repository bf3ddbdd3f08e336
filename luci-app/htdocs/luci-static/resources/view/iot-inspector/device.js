'use strict';
'require view';
'require iot-inspector.luci as iot';

/* A thin wrapper: the view itself is IotInspector.views.device in
 * iot-inspector/render.js, shared with the standalone dashboard. The device
 * is given as ?mac=aa:bb:cc:dd:ee:ff. */
return view.extend({
	load: function () { return iot.ready(); },
	render: function () {
		var mac = new URLSearchParams(window.location.search).get('mac') || '';
		return iot.mount('device', mac.toLowerCase());
	},
	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
