'use strict';
'require view';
'require iot-inspector.luci as iot';

/* A thin wrapper: the view itself is IotInspector.views.devices in
 * iot-inspector/render.js, shared with the standalone dashboard. */
return view.extend({
	load: function () { return iot.ready(); },
	render: function () { return iot.mount('devices'); },
	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
