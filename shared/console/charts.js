// Charts as plain SVG: horizontal bars for counts, stacked columns for trends. Every chart
// has a text summary (aria-label) and the figures in a table beside it.

import {s, h, fmtDuration} from './dom.js';

/** Horizontal bars: `entries` [{label, value, cls}] (e.g. executions by status). */
export function barList(title, entries) {
  const rowH = 26;
  const labelW = 110;
  const barW = 320;
  const max = Math.max(1, ...entries.map((e) => e.value));
  const height = entries.length * rowH + 8;
  const summary = entries.map((e) => `${e.label} ${e.value}`).join(', ');
  return s('svg', {class: 'chart', viewBox: `0 0 ${labelW + barW + 60} ${height}`, role: 'img', 'aria-label': `${title}: ${summary}`},
    entries.map((e, i) => {
      const y = 4 + i * rowH;
      const w = Math.max(e.value > 0 ? 2 : 0, (e.value / max) * barW);
      return s('g', {},
        s('text', {x: labelW - 8, y: y + 16, 'text-anchor': 'end', class: 'axis'}, e.label),
        s('rect', {x: labelW, y: y + 3, width: w, height: rowH - 8, rx: 3, class: `bar ${e.cls || ''}`},
          s('title', {}, `${e.label}: ${e.value}`)),
        s('text', {x: labelW + w + 6, y: y + 16, class: 'axis'}, String(e.value)));
    }));
}

const TREND_SERIES = ['success', 'failed', 'timeout', 'cancelled'];

/** Stacked columns of a workflow's trends (`items` of GET /workflows/{id}/trends). */
export function trendChart(items, interval) {
  const width = 640;
  const height = 200;
  const left = 40;
  const bottom = 28;
  const plotH = height - bottom - 10;
  const max = Math.max(1, ...items.map((i) => i.total));
  const step = items.length > 0 ? (width - left - 10) / items.length : 0;
  const barW = Math.max(3, Math.min(40, step * 0.7));
  const label = (start) => {
    const d = new Date(start);
    return interval === 'hour'
      ? d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})
      : d.toLocaleDateString([], {month: 'short', day: 'numeric'});
  };
  const every = Math.max(1, Math.ceil(items.length / 8));
  const total = items.reduce((sum, i) => sum + i.total, 0);
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Executions per ${interval}: ${total} in ${items.length} intervals`},
  s('line', {x1: left, y1: 10 + plotH, x2: width - 10, y2: 10 + plotH, class: 'axis-line'}),
  s('text', {x: left - 6, y: 16, 'text-anchor': 'end', class: 'axis'}, String(max)),
  s('text', {x: left - 6, y: 10 + plotH, 'text-anchor': 'end', class: 'axis'}, '0'),
  items.map((item, i) => {
    const x = left + i * step + (step - barW) / 2;
    let y = 10 + plotH;
    const parts = TREND_SERIES.map((key) => {
      const hgt = (item[key] / max) * plotH;
      y -= hgt;
      return hgt > 0 ? s('rect', {x, y, width: barW, height: hgt, class: `bar status-${key}`}) : null;
    });
    return s('g', {},
      s('title', {}, `${label(item.start)}: ${item.total} (${TREND_SERIES.map((k) => `${k} ${item[k]}`).join(', ')}), average ${fmtDuration(item.averageDuration)}, p95 ${fmtDuration(item.p95Duration)}`),
      parts,
      i % every === 0 ? s('text', {x: x + barW / 2, y: height - 8, 'text-anchor': 'middle', class: 'axis'}, label(item.start)) : null);
  }));
  return h('figure', {class: 'chart-figure'}, svg,
    h('figcaption', {class: 'legend'}, TREND_SERIES.map((k) => h('span', {class: `key status-${k}`}, k))));
}
