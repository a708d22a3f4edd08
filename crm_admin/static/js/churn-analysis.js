/* crm-admin: the charts of the churn analysis page (churn/analysis.html), drawn by the locally
 * served ECharts from the page's JSON blocks. Tooltips are drawn by the chart itself
 * (renderMode "richText"): ECharts' HTML tooltips carry style attributes, which the
 * Content-Security-Policy refuses. */
(function () {
  'use strict';
  if (!window.echarts) return;
  function json(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : {};
  }
  var d = json('churn-data');
  var label = json('churn-labels');
  function tooltip(trigger) { return { trigger: trigger, renderMode: 'richText' }; }
  function chart(id, option) {
    var el = document.getElementById(id);
    if (el) window.echarts.init(el).setOption(option);
  }
  chart('chart-reasons', {
    tooltip: tooltip('item'),
    series: [{ type: 'pie', radius: ['35%', '65%'], data: d.reasons }]
  });
  chart('chart-levels', {
    tooltip: tooltip('axis'), legend: {},
    xAxis: { type: 'category', data: d.levels.names },
    yAxis: { type: 'value', minInterval: 1 },
    series: d.levels.series.map(function (s) { return { name: s.name, type: 'bar', stack: 'all', data: s.data }; })
  });
  chart('chart-managers', {
    tooltip: tooltip('axis'),
    xAxis: { type: 'category', data: d.managers.names },
    yAxis: { type: 'value', minInterval: 1 },
    series: [{ type: 'bar', data: d.managers.values, name: label.lost }]
  });
  chart('chart-months', {
    tooltip: tooltip('axis'), legend: {},
    xAxis: { type: 'category', data: d.months.names },
    yAxis: { type: 'value', minInterval: 1 },
    series: [{ name: label.lost, type: 'line', data: d.months.lost },
             { name: label.retained, type: 'line', data: d.months.retained }]
  });
})();
