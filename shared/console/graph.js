// A workflow drawn as a left-to-right layered graph (SVG): each node in the column of its
// longest path from a trigger, ordered within the column by its parents' positions.

import {s} from './dom.js';

const W = 176;
const H = 58;
const GAP_X = 72;
const GAP_Y = 26;
const PAD = 16;

/** Columns of node ids, in order: layer = longest path from a node without parents. */
export function layout(nodes, connections) {
  const ids = new Set(nodes.map((n) => n.id));
  const parents = new Map(nodes.map((n) => [n.id, []]));
  const children = new Map(nodes.map((n) => [n.id, []]));
  for (const c of connections) {
    if (!ids.has(c.source) || !ids.has(c.target)) continue;
    parents.get(c.target).push(c.source);
    children.get(c.source).push(c.target);
  }
  const indegree = new Map(nodes.map((n) => [n.id, parents.get(n.id).length]));
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  const queue = nodes.filter((n) => indegree.get(n.id) === 0).map((n) => n.id);
  while (queue.length > 0) {
    const id = queue.shift();
    for (const child of children.get(id)) {
      layer.set(child, Math.max(layer.get(child), layer.get(id) + 1));
      indegree.set(child, indegree.get(child) - 1);
      if (indegree.get(child) === 0) queue.push(child);
    }
  }
  const columns = [];
  for (const n of nodes) {
    const l = layer.get(n.id);
    while (columns.length <= l) columns.push([]);
    columns[l].push(n.id);
  }
  const row = new Map();
  columns.forEach((column, l) => {
    if (l > 0) {
      const weight = (id) => {
        const ps = parents.get(id).filter((p) => row.has(p));
        return ps.length === 0 ? Infinity : ps.reduce((sum, p) => sum + row.get(p), 0) / ps.length;
      };
      column.sort((a, b) => weight(a) - weight(b));
    }
    column.forEach((id, i) => row.set(id, i));
  });
  return columns;
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The graph of `nodes` ({id, name, type}) and `connections`; `onSelect(id)` when a node is
 * clicked or chosen with the keyboard. Statuses are set with `setStatuses`.
 */
export function drawGraph(nodes, connections, onSelect) {
  const columns = layout(nodes, connections);
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X;
  const at = new Map();
  columns.forEach((column, l) => {
    const columnHeight = column.length * H + (column.length - 1) * GAP_Y;
    const top = (height - columnHeight) / 2;
    column.forEach((id, i) => at.set(id, {x: PAD + l * (W + GAP_X), y: top + i * (H + GAP_Y)}));
  });
  const byId = new Map(nodes.map((n) => [n.id, n]));

  const edges = connections
    .filter((c) => at.has(c.source) && at.has(c.target))
    .map((c) => {
      const a = at.get(c.source);
      const b = at.get(c.target);
      const x1 = a.x + W;
      const y1 = a.y + H / 2;
      const x2 = b.x - 4;
      const y2 = b.y + H / 2;
      const mid = (x1 + x2) / 2;
      const type = c.type || 'main';
      return s('g', {class: 'edge', 'data-source': c.source, 'data-target': c.target},
        s('path', {d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)'}),
        type === 'main' ? null : s('text', {x: mid, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle'}, type));
    });

  const boxes = nodes.map((n) => {
    const {x, y} = at.get(n.id);
    const g = s('g', {
      class: 'node',
      'data-node-id': n.id,
      'data-type': n.type,
      transform: `translate(${x},${y})`,
      tabindex: 0,
      role: 'button',
      'aria-label': n.name || n.id,
    },
    s('title', {}, `${n.name || n.id} (${n.type})`),
    s('rect', {width: W, height: H, rx: 8}),
    s('text', {x: 12, y: 23, class: 'node-name'}, clip(n.name || n.id, 22)),
    s('text', {x: 12, y: 43, class: 'node-sub'}, clip(n.type, 26)));
    const choose = () => onSelect && onSelect(n.id);
    g.addEventListener('click', choose);
    g.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        choose();
      }
    });
    return g;
  });

  const svg = s('svg', {
    id: 'graph',
    class: 'graph',
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'group',
    'aria-label': 'Workflow graph',
  },
  s('defs', {}, s('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
    s('path', {d: 'M0,0 L10,5 L0,10 z'}))),
  edges, boxes);
  svg.dataset.nodes = String(byId.size);
  return svg;
}

/** Colours the nodes of `svg` by `statuses` (nodeId → {status, attempts}) and writes the status. */
export function setStatuses(svg, statuses) {
  for (const g of svg.querySelectorAll('g.node')) {
    const run = statuses.get(g.dataset.nodeId);
    if (!run) continue;
    g.dataset.status = run.status;
    const name = g.querySelector('.node-name').textContent;
    g.setAttribute('aria-label', `${name}: ${run.status}`);
    const sub = g.querySelector('.node-sub');
    const attempts = run.attempts > 1 ? ` ×${run.attempts}` : '';
    sub.textContent = `${run.status}${attempts} · ${clip(g.dataset.type, 16)}`;
  }
}

/** Marks `id` as the selected node. */
export function select(svg, id) {
  for (const g of svg.querySelectorAll('g.node')) {
    g.classList.toggle('selected', g.dataset.nodeId === id);
    g.setAttribute('aria-pressed', String(g.dataset.nodeId === id));
  }
}
