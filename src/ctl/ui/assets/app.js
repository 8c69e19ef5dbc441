// ochopod ctl ui: renders the server's model (GET api/model, then SSE api/events).
// Every value comes from ZooKeeper or from pods, which are untrusted: it goes into the page as
// textContent or as an SVG attribute, never as markup.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  let model = null;
  let logPod = null;
  let rendered = false;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  // The filter: `*` and `?` are wildcards over the whole key; without them, a substring.
  function matcher(text) {
    const p = text.trim();
    if (!p) return () => true;
    if (!/[*?]/.test(p)) return (key) => key.includes(p);
    const re = new RegExp('^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
    return (key) => re.test(key);
  }

  // How a pod looks: bad (red), held, leaving, warn (not ready), ok, unknown (no answer yet).
  function health(pod) {
    if (pod.state === 'failed' || pod.info_error) return 'bad';
    if (pod.state === 'held') return 'held';
    if (pod.state === 'leaving') return 'leaving';
    const i = pod.info;
    if (!i) return 'unknown';
    if (i.process !== 'running') return 'bad';
    if (i.ready !== true) return 'warn';
    return 'ok';
  }

  function exitText(e) {
    if (!e) return '-';
    if (e.signal !== null && e.signal !== undefined) return 'signal ' + e.signal;
    if (e.code !== null && e.code !== undefined) return 'code ' + e.code;
    return '-';
  }

  function value(v) {
    if (v === null || v === undefined || v === '') return '-';
    if (v === true) return 'yes';
    if (v === false) return 'no';
    return String(v);
  }

  function seqOf(cluster, uuid) {
    const p = cluster.pods.find((x) => x.uuid === uuid);
    return p ? '#' + p.seq : uuid ? String(uuid).slice(0, 8) : 'none';
  }

  function clusterSection(c) {
    const s = el('section', 'cluster');
    s.dataset.key = c.key;
    const head = el('h2');
    head.append(el('span', 'key', c.key));
    const live = c.pods.filter((p) => health(p) === 'ok').length;
    head.append(el('span', 'badge', live + '/' + c.pods.length + ' up'));
    head.append(el('span', 'badge', 'leader ' + seqOf(c, c.leader)));
    if (c.generation !== null && c.generation !== undefined) head.append(el('span', 'badge', 'generation ' + c.generation));
    if (c.depends_on.length) head.append(el('span', 'badge', 'depends on ' + c.depends_on.join(', ')));
    if (c.paused) head.append(el('span', 'badge paused', 'paused'));
    s.append(head);
    if (c.paused) s.append(el('p', 'warning', c.paused));
    if (c.leader_status) s.append(el('p', 'leader-status', 'leader: ' + c.leader_status));
    if (c.failed.length) s.append(el('p', 'warning', 'evicted: ' + c.failed.map((u) => seqOf(c, u)).join(', ')));
    for (const r of c.rejected) s.append(el('p', 'warning', 'rejected registration ' + r.znode + ': ' + r.reason));
    const table = el('table');
    const hr = el('tr');
    for (const h of ['seq', 'ip', 'role', 'process', 'pod state', 'ready', 'generation', 'restarts', 'last exit', 'status']) hr.append(el('th', null, h));
    const thead = el('thead');
    thead.append(hr);
    table.append(thead);
    const body = el('tbody');
    for (const p of c.pods) {
      const i = p.info || {};
      const h = health(p);
      const tr = el('tr', 'pod ' + h);
      tr.dataset.cluster = c.key;
      tr.dataset.uuid = p.uuid;
      tr.dataset.seq = p.seq;
      tr.dataset.health = h;
      tr.title = 'click: last log lines of ' + c.key + ' #' + p.seq;
      const role = i.state || (p.leader ? 'leader' : '-');
      const cells = [
        '#' + p.seq + (p.leader ? ' ★' : ''),
        p.ip + ':' + p.control_port,
        role,
        value(i.process),
        value(p.state),
        value(i.ready),
        value(i.generation),
        value(i.restarts),
        exitText(i.last_exit),
        p.info_error ? p.info_error : value(i.status),
      ];
      cells.forEach((text, n) => tr.append(el('td', n === 9 ? 'status' : null, text)));
      tr.addEventListener('click', () => openLog(c.key, p.uuid, c.key + ' #' + p.seq));
      body.append(tr);
    }
    if (!c.pods.length) {
      const tr = el('tr');
      const td = el('td', 'empty', 'no pod registered');
      td.colSpan = 10;
      tr.append(td);
      body.append(tr);
    }
    table.append(body);
    s.append(table);
    return s;
  }

  // Clusters as boxes, depends_on as arrows (dependent -> dependency), dependencies to the left.
  // Red: a dependency with no live pod (the `min` of depends_on is in pod.yaml, not ZooKeeper).
  function graph(clusters) {
    const byKey = new Map(clusters.map((c) => [c.key, c]));
    const nodes = new Map();
    for (const c of clusters) nodes.set(c.key, c);
    for (const c of clusters) for (const d of c.depends_on) if (!nodes.has(d)) nodes.set(d, null);
    const level = new Map();
    const depth = (key, seen) => {
      if (level.has(key)) return level.get(key);
      if (seen.has(key)) return 0; // a cycle: the leaders report it
      seen.add(key);
      const c = nodes.get(key);
      let l = 0;
      if (c) for (const d of c.depends_on) l = Math.max(l, depth(d, seen) + 1);
      seen.delete(key);
      level.set(key, l);
      return l;
    };
    for (const k of nodes.keys()) depth(k, new Set());
    const columns = [];
    for (const [k, l] of level) (columns[l] = columns[l] || []).push(k);
    const W = 190, H = 46, GX = 70, GY = 16, PAD = 10;
    const pos = new Map();
    let rows = 0;
    columns.forEach((col, x) => {
      col.sort();
      col.forEach((k, y) => pos.set(k, { x: PAD + x * (W + GX), y: PAD + y * (H + GY) }));
      rows = Math.max(rows, col.length);
    });
    const width = PAD * 2 + columns.length * (W + GX) - GX;
    const height = PAD * 2 + rows * (H + GY) - GY;
    const root = svg('svg', { width: Math.max(width, 0), height: Math.max(height, 0), viewBox: '0 0 ' + Math.max(width, 0) + ' ' + Math.max(height, 0), role: 'img' });
    root.append(svg('title', {}, 'dependency graph'));
    const defs = svg('defs', {});
    for (const [id, cls] of [['arrow', 'edge'], ['arrow-bad', 'edge bad']]) {
      const m = svg('marker', { id: id, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto' });
      m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: cls + ' head' }));
      defs.append(m);
    }
    root.append(defs);
    for (const c of clusters) {
      for (const d of c.depends_on) {
        const a = pos.get(c.key), b = pos.get(d);
        if (!a || !b) continue;
        const target = byKey.get(d);
        const bad = !target || target.live === 0;
        const line = svg('line', { x1: a.x, y1: a.y + H / 2, x2: b.x + W, y2: b.y + H / 2, class: bad ? 'edge bad' : 'edge', 'marker-end': bad ? 'url(#arrow-bad)' : 'url(#arrow)' });
        line.dataset.from = c.key;
        line.dataset.to = d;
        root.append(line);
      }
    }
    for (const [k, p] of pos) {
      const c = nodes.get(k);
      const hs = c ? c.pods.map(health) : [];
      const cls = !c ? 'missing' : c.pods.length === 0 || hs.includes('bad') ? 'bad' : hs.every((h) => h === 'ok') ? 'ok' : 'warn';
      const g = svg('g', { class: 'node ' + cls });
      g.dataset.key = k;
      g.append(svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6 }));
      g.append(svg('text', { x: p.x + 10, y: p.y + 19, class: 'name' }, k.length > 26 ? k.slice(0, 25) + '…' : k));
      const sub = c ? c.live + ' live / ' + c.pods.length + ' pods' : 'not registered';
      g.append(svg('text', { x: p.x + 10, y: p.y + 36, class: 'sub' }, sub));
      root.append(g);
    }
    return root;
  }

  function describe(e) {
    const pod = e.seq !== undefined && e.seq !== null ? '#' + e.seq + ' ' : '';
    switch (e.kind) {
      case 'registered': return pod + 'registered ' + e.ip + (e.state !== 'running' ? ' (' + e.state + ')' : '');
      case 'left': case 'expired': return pod + e.kind + ' ' + e.ip;
      case 'held': case 'failed': case 'leaving': case 'running': return pod + e.kind + ' ' + e.ip + ' (was ' + e.was + ')';
      case 'configured': return 'configured generation ' + e.generation + ': ' + (e.seqs.length ? e.seqs.map((s) => '#' + s).join(' ') : 'no pods');
      case 'leader': return e.uuid ? 'leader ' + (e.seq !== null ? '#' + e.seq + ' ' + e.ip : e.uuid) : 'leader none';
      case 'evicted': return (e.seq !== null ? '#' + e.seq : e.uuid) + ' evicted';
      case 'depends_on': return 'depends_on ' + (e.depends_on.length ? e.depends_on.join(', ') : '(none)');
      case 'rejected': return 'rejected registration ' + e.znode + ': ' + e.reason;
      case 'paused': return 'paused by ' + (e.by === 'leader' ? 'the leader' : 'an operator') + (e.reason ? ': ' + e.reason : '');
      case 'resumed': return 'resumed';
      default: return String(e.kind);
    }
  }

  function render() {
    if (!model || model.loading) return;
    const match = matcher($('filter').value);
    const clusters = model.clusters.filter((c) => match(c.key));
    const list = $('clusters');
    list.replaceChildren();
    if (!clusters.length) list.append(el('p', 'empty', model.clusters.length ? 'No cluster matches the filter.' : 'No cluster in ZooKeeper.'));
    for (const c of clusters) list.append(clusterSection(c));
    $('graph').replaceChildren(graph(clusters));
    const pods = clusters.reduce((n, c) => n + c.pods.length, 0);
    $('summary').textContent = clusters.length + ' clusters, ' + pods + ' pods';
    $('zk').textContent = 'ZooKeeper ' + model.zk + ' · ' + model.time;
    const events = $('events');
    events.replaceChildren();
    const shown = model.events.filter((e) => match(e.cluster)).slice(-50).reverse();
    for (const e of shown) {
      const li = el('li', 'event ' + e.kind);
      li.append(el('time', null, e.time), el('span', 'cluster', e.cluster), el('span', null, describe(e)));
      events.append(li);
    }
    if (!shown.length) events.append(el('li', 'empty', 'none yet'));
    document.documentElement.dataset.version = model.version;
    if (!rendered) {
      rendered = true;
      // For the benchmark and the browser test: when the first model was on screen.
      document.documentElement.dataset.firstRenderMs = performance.now().toFixed(1);
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      if (fcp) document.documentElement.dataset.fcpMs = fcp.startTime.toFixed(1);
    }
  }

  async function openLog(cluster, uuid, name) {
    logPod = { cluster, uuid, name };
    $('log').hidden = false;
    $('log-title').textContent = name + ' (last 100 lines)';
    $('log-lines').textContent = 'loading…';
    try {
      const q = new URLSearchParams({ cluster, uuid, lines: '100' });
      const r = await fetch('api/log?' + q.toString());
      const body = await r.json();
      if (logPod === null || logPod.uuid !== uuid) return;
      $('log-lines').textContent = r.ok ? (body.lines || []).join('\n') : 'error: ' + body.error;
    } catch (err) {
      $('log-lines').textContent = 'error: ' + err;
    }
  }

  function setModel(text) {
    try {
      model = JSON.parse(text);
    } catch (err) {
      return;
    }
    render();
  }

  function connect() {
    const source = new EventSource('api/events');
    source.addEventListener('model', (e) => setModel(e.data));
    source.onopen = () => { $('live').textContent = 'live'; $('live').className = 'conn live'; };
    source.onerror = () => { $('live').textContent = 'reconnecting'; $('live').className = 'conn down'; };
  }

  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.name === 'first-contentful-paint') document.documentElement.dataset.fcpMs = e.startTime.toFixed(1);
    }
  }).observe({ type: 'paint', buffered: true });

  $('filter').addEventListener('input', render);
  $('log-close').addEventListener('click', () => { logPod = null; $('log').hidden = true; });
  $('log-refresh').addEventListener('click', () => { if (logPod) openLog(logPod.cluster, logPod.uuid, logPod.name); });
  fetch('api/model').then((r) => r.text()).then((t) => { if (!model) setModel(t); }).catch(() => {});
  connect();
})();
