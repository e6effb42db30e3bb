/* inception-sae site, layer page: headline metrics, branch figures, UMAP scatter, feature table. */
(function () {
  'use strict';
  const SAE = window.SAE;
  const PAGE = 50;
  const states = {};

  function metric(name, value, bad, on) {
    const where = on ? `<small class="metric-on">${SAE.esc(on)}</small>` : '';
    return `<div class="metric${bad ? ' bad' : ''}"><b>${value}</b><span>${name}</span>${where}</div>`;
  }

  function headline(index) {
    const h = index.headline || {};
    const c = index.counts || {};
    return `<div class="metrics">
      ${metric('features', index.cols.id.length)}${metric('k (TopK)', h.k == null ? '–' : h.k)}
      ${metric('FVU', SAE.fmt(h.fvu, 3), false, h.fvu_on)}${metric('L0', SAE.fmt(h.l0, 1))}
      ${metric('dead', deadText(h), false, h.dead_on ? `${h.dead_on}${h.dead_rows != null ? `, ${h.dead_rows.toLocaleString('en')} rows` : ''}` : '')}
      ${metric('splice-back top-1', h.splice_note ? `${SAE.pct(h.splice_top1)} <small class="err" id="splice-note">${SAE.esc(h.splice_note)}</small>` : SAE.pct(h.splice_top1), !!h.splice_note, h.splice_on)}${metric('images', h.images == null ? '–' : h.images)}
      ${metric('weights', SAE.esc(index.untrained ? 'UNTRAINED ' + index.identity : String(index.identity).slice(0, 32)), index.untrained)}
      ${h.dense_fraction != null ? metric('dense (>10%)', rangeText(h.dense_fraction, h.dense_interval), false, h.dead_on) : ''}</div>`;
  }

  /* The quality panel (eval.json's ``quality``, docs/quality.md): every number with its interval and sample. */
  const ivPct = (x, iv) => (x == null ? '–' : `${SAE.pct(x)} <small>[${iv ? SAE.pct(iv[0]) + ', ' + SAE.pct(iv[1]) : '–'}]</small>`);
  const ivNum = (x, iv) => (x == null ? '–' : `${SAE.fmt(x, 3)} <small>[${iv ? SAE.range(iv[0], iv[1]).join(', ') : '–'}]</small>`);
  const skipped = (part) => `<p class="small muted">${SAE.esc(typeof part.skipped === 'string' ? part.skipped : 'not measured')}</p>`;

  function qualityPanel(q) {
    if (!q) return '';
    const ab = q.absorption || {}, pr = q.probing || {}, st = q.stability || {}, l0 = q.l0 || {};
    const abRows = (ab.parents || []).map((p) => `<tr><td class="l">${SAE.esc(p.concept)}</td><td>${ivPct(p.absorbed.rate, p.absorbed.interval)}</td>
      <td>${p.absorbed.n}</td><td>${p.parent_latent < 0 ? '–' : p.parent_latent}</td><td>${SAE.fmt(p.parent_f1, 2)}</td><td>${p.children_with_latent}/${p.children}</td></tr>`).join('');
    const absorption = ab.skipped ? skipped(ab) : `<table class="scores" id="q-absorption"><tr><th class="l">parent</th><th>absorbed [95%]</th><th>n images</th>
      <th>parent latent</th><th>its F1</th><th>children with a latent</th></tr>${abRows}</table><p class="small muted">${SAE.esc(ab.definition || '')}; ${ab.images} images (${SAE.esc(ab.codes || '')}).</p>`;
    const prRows = (pr.concepts || []).filter((c) => c.probes).map((c) => `<tr><td class="l">${SAE.esc(c.concept)}</td>${c.probes.map((p) =>
      `<td>${ivNum(p.f1, p.f1_interval)}</td>`).join('')}<td>${SAE.fmt(c.baseline_f1, 2)}</td><td>${c.test} (${c.positive_test} +)</td></tr>`).join('');
    const ks = ((pr.concepts || []).find((c) => c.probes) || { probes: [] }).probes.map((p) => `<th>F1, k=${p.k}</th>`).join('');
    const probing = pr.skipped ? skipped(pr) : `<table class="scores" id="q-probing"><tr><th class="l">concept</th>${ks}<th>baseline F1</th><th>n test</th></tr>${prRows}</table>`;
    const stRows = (st.siblings || []).map((s) => `<tr><td class="l"><code>${SAE.esc(SAE.shortPath(s.sae))}</code></td><td>${ivNum(s.mean_cosine.mean, s.mean_cosine.interval)}</td>
      <td>${ivPct(s['above_0.9'].rate, s['above_0.9'].interval)}</td><td>${ivPct(s['above_0.7'].rate, s['above_0.7'].interval)}</td><td>${ivNum(s.mcc.mean, s.mcc.interval)}</td>
      <td>${s.mean_cosine.n} latents, ${s.rows} rows</td><td>${SAE.fmt(s.baseline_mean_cosine.mean, 2)} / ${SAE.fmt(s.baseline_mcc.mean, 2)}</td></tr>`).join('');
    const stability = st.skipped ? skipped(st) : `<table class="scores" id="q-stability"><tr><th class="l">sibling</th><th>matched cosine</th><th>&gt; 0.9</th><th>&gt; 0.7</th>
      <th>MCC</th><th>n</th><th>baseline cos / MCC</th></tr>${stRows}</table>`;
    const points = (l0.points || []).map((p) => `k=${p.k}: FVU ${SAE.fmt(p.fvu, 3)}`).join(' · ');
    const advice = l0.l0 == null ? `<p class="small muted" id="q-l0">${SAE.esc(l0.note || 'not measured')}</p>`
      : `<p id="q-l0">advised L0 <b>${SAE.fmt(l0.l0, 3)}</b> <small>[${SAE.fmt(l0.interval[0], 3)}, ${SAE.fmt(l0.interval[1], 3)}]</small> from ${l0.sweep} SAEs (${points})</p>`;
    return `<div class="card" id="quality"><h2>SAE quality</h2><p class="small muted">On ${q.rows ? `store rows [${q.rows[0]}, ${q.rows[1]})` : 'the store rows'}; intervals are 95%.</p>
      <h3>Absorption</h3>${absorption}<h3>Sparse probing</h3>${probing}<h3>Seed stability</h3>${stability}
      <h3>L0 advice</h3>${advice}<p class="small muted">${SAE.esc(l0.rule || '')}</p></div>`;
  }

  /* A share with its interval, e.g. "1.2% (0.9–1.6%)". */
  function rangeText(x, iv) {
    return iv ? `${SAE.pct(x)} <small>(${SAE.pct(iv[0])}–${SAE.pct(iv[1])})</small>` : SAE.pct(x);
  }

  /* Dead latents with their interval, or why there is no number (too few rows to tell dead from rare). */
  function deadText(h) {
    if (h.dead_fraction != null) return rangeText(h.dead_fraction, h.dead_interval);
    return h.dead_status ? `<small class="err" id="dead-status">${SAE.esc(h.dead_status)}</small>` : '–';
  }

  /* The header search: a label (or id) query shown in this layer's feature table. */
  SAE.searchLayer = function (layer, q) {
    const st = (states[layer] = states[layer] || freshState());
    st.q = q;
    st.page = 0;
    if (location.hash === '#/' + layer) SAE.route();
    else location.hash = '#/' + layer;
  };

  function freshState() {
    return { q: '', branch: '', cat: '', fmin: '', fmax: '', smin: '', sort: 'id', asc: true, page: 0, colour: 'branch' };
  }

  function state(index) {
    return (states[index.layer] = states[index.layer] || freshState());
  }

  /* The layer has concept labels: a category column, filter and map colouring. */
  const hasCategories = (index) => !!(index.cols.cat && ((index.labels || {}).concepts || index.cols.cat.some((c) => c)));

  function visibleRows(index, st) {
    const c = index.cols, n = c.id.length, vis = new Uint8Array(n);
    const q = st.q.trim().toLowerCase(), qid = /^\d+$/.test(q) ? +q : null;
    const fmin = st.fmin === '' ? -Infinity : +st.fmin, fmax = st.fmax === '' ? Infinity : +st.fmax;
    const smin = st.smin === '' ? -Infinity : +st.smin;
    for (let r = 0; r < n; r++) {
      if (st.branch && c.dom[r] !== st.branch) continue;
      if (st.cat && c.cat && (st.cat === NO_LABEL ? c.cat[r] !== '' : c.cat[r] !== st.cat)) continue;
      if (q && !(qid === c.id[r] || c.label[r].toLowerCase().includes(q))) continue;
      const f = c.freq[r] == null ? 0 : c.freq[r];
      if (f < fmin || f > fmax) continue;
      if ((c.score[r] == null ? -Infinity : c.score[r]) < smin) continue;
      vis[r] = 1;
    }
    return vis;
  }

  function sortedRows(index, st, vis) {
    const col = index.cols[st.sort] || index.cols.id;
    const rows = [];
    for (let r = 0; r < vis.length; r++) if (vis[r]) rows.push(r);
    const sign = st.asc ? 1 : -1;
    rows.sort((a, b) => {  // missing values (null, or no label: '') last, either way
      const x = col[a], y = col[b];
      if (x == null || x === '') return y == null || y === '' ? 0 : 1;
      if (y == null || y === '') return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
    return rows;
  }

  const NO_LABEL = '(no label)';
  const HEAD = [['id', 'id'], ['thumb', ''], ['label', 'label'], ['score', 'score'], ['cat', 'cat'], ['freq', 'frequency'],
    ['max', 'max'], ['dom', 'dominant branch'], ['share', 'share'], ['p', 'p-value'], ['q', 'q (BH)']];

  function table(index, st, rows) {
    const c = index.cols, L = SAE.esc(index.layer);
    const cats = hasCategories(index), HEAD_SHOWN = cats ? HEAD : HEAD.filter(([k]) => k !== 'cat');
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    st.page = Math.min(st.page, pages - 1);
    const slice = rows.slice(st.page * PAGE, (st.page + 1) * PAGE);
    const head = HEAD_SHOWN.map(([k, t]) => `<th data-k="${k}" class="${st.sort === k ? 'sorted' + (st.asc ? ' asc' : '') : ''}">${t}</th>`).join('');
    const body = slice.map((r) => `<tr class="row" data-id="${c.id[r]}">
      <td class="num"><a href="#/${L}/f/${c.id[r]}">${c.id[r]}</a></td><td>${SAE.img(c.thumb[r], '', '')}</td>
      <td>${SAE.esc(c.label[r]) || (cats ? '<span class="muted">no label</span>' : '')}</td><td class="num">${SAE.fmt(c.score[r], 3)}</td>${cats ? `<td class="cat">${SAE.catChip(c.cat[r])}</td>` : ''}<td class="num">${SAE.fmt(c.freq[r], 3)}</td>
      <td class="num">${SAE.fmt(c.max[r], 3)}</td><td>${SAE.chip(index, c.dom[r])}</td><td class="num">${SAE.fmt(c.share[r], 3)}</td>
      <td class="num">${SAE.pval(c.p[r])}</td><td class="num">${c.q ? SAE.pval(c.q[r]) : '–'}</td></tr>`).join('');
    return `<table class="ft" id="ftable"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>
      <div class="pager"><button id="prev" ${st.page ? '' : 'disabled'}>‹ prev</button>
      <span id="pageinfo">page ${st.page + 1} / ${pages} · ${rows.length} of ${c.id.length} features</span>
      <button id="next" ${st.page < pages - 1 ? '' : 'disabled'}>next ›</button></div>`;
  }

  function filters(index, st) {
    const opts = ['<option value="">all branches</option>'].concat(index.branches.concat(['none']).map((b) =>
      `<option value="${SAE.esc(b)}"${b === st.branch ? ' selected' : ''}>${SAE.esc(b)}</option>`)).join('');
    return `<div class="filters" id="filters">
      <label>search label or id<input id="f-q" type="search" value="${SAE.esc(st.q)}" placeholder="e.g. dog"></label>
      <label>dominant branch<select id="f-branch">${opts}</select></label>
      ${hasCategories(index) ? `<label>label category<select id="f-cat">${catOptions(index, st)}</select></label>` : ''}
      <label>frequency ≥<input id="f-fmin" type="number" step="any" min="0" max="1" value="${SAE.esc(st.fmin)}" style="width:90px"></label>
      <label>frequency ≤<input id="f-fmax" type="number" step="any" min="0" max="1" value="${SAE.esc(st.fmax)}" style="width:90px"></label>
      <label>label score ≥<input id="f-smin" type="number" step="any" value="${SAE.esc(st.smin)}" style="width:80px"></label>
      <span class="small muted" id="f-count"></span></div>`;
  }

  function catOptions(index, st) {
    const cats = [...new Set(index.cols.cat.filter((c) => c))].sort();
    return ['<option value="">all</option>'].concat(cats.concat([NO_LABEL]).map((c) =>
      `<option value="${SAE.esc(c)}"${c === st.cat ? ' selected' : ''}>${SAE.esc(c === NO_LABEL ? 'no label' : c)}</option>`)).join('');
  }

  /* The map's colouring: branch, or (with concept labels) the label's category, unlabelled in grey. */
  function mapColours(index, st) {
    if (st.colour !== 'category' || !hasCategories(index)) return null;
    return index.cols.cat.map((c) => SAE.categoryColour(c));
  }

  function mapLegend(index, st) {
    if (st.colour === 'category' && hasCategories(index)) {
      const cats = [...new Set(index.cols.cat.filter((c) => c))].sort();
      return cats.map((c) => `<span><i style="background:${SAE.categoryColour(c)}"></i>${SAE.esc(c)}</span>`).join('') +
        `<span><i style="background:${SAE.NO_LABEL_COLOUR}"></i>no label</span>`;
    }
    return index.branches.map((b) => `<span><i style="background:${SAE.branchColour(index, b)}"></i>${SAE.esc(b)}</span>`).join('');
  }

  function mapToggle(index, st) {
    if (!hasCategories(index)) return '';
    return '<div class="seg" id="umap-colour">' + [['branch', 'dominant branch'], ['category', 'label category']].map(([k, t]) =>
      `<button type="button" data-colour="${k}" class="${st.colour === k ? 'on' : ''}">${t}</button>`).join('') + '</div>';
  }

  function specialised(index) {
    const c = index.counts || {}, sp = c.specialised_fdr_1pct, spn = c.specialised_fdr_1pct_norm || {};
    if (!sp) return '';
    const t = index.branch_test || {};
    const rows = Object.keys(sp).map((b) => `<li>${SAE.chip(index, b)} ${sp[b]}${b in spn ? ` <span class="muted">(norm share: ${spn[b]})</span>` : ''}</li>`).join('');
    const status = t.fdr_1pct_status ? `<p class="small muted" id="fdr-status">${SAE.esc(t.fdr_1pct_status)}</p>` : '';
    return `<h3>Specialised at FDR 1% (Benjamini–Hochberg q ≤ 0.01 over features × branches)</h3>
      <ul class="plain" id="fdr-counts">${rows}</ul>${status}
      <p class="small muted">${SAE.esc(t.null || '')}${t.units ? `. Units: ${SAE.esc(t.units)}.` : ''}</p>`;
  }

  SAE.pages.layer = function (index) {
    const L = SAE.esc(index.layer);
    SAE.crumbs([{ text: index.layer }]);
    const st = state(index);
    const hasMap = index.cols.x.some((v) => v != null);
    const figs = index.figures.map((f) => `<a href="${SAE.esc(f)}">${SAE.img(f, '', f)}</a>`).join('');
    SAE.app().innerHTML = `<h1>${L}: ${index.cols.id.length} SAE features</h1>
      <p class="muted small">Model <code>${SAE.esc(index.identity)}</code>${index.sae.path ? ` · SAE <code>${SAE.esc(SAE.shortPath(index.sae.path))}</code>` : ''}
      · labels: ${SAE.esc((index.labels || {}).kind || 'from the analysis')}
      ${index.classes ? ` · <a href="#/${L}/classes">classes → features</a>` : ''}${(SAE.site() || {}).concepts ? ' · <a href="#/concepts" id="concepts-nav">concepts across layers</a>' : ''} · <span id="live-link"></span> <span id="compare-links"></span></p>
      <div class="card">${headline(index)}</div>
      ${qualityPanel((index.headline || {}).quality)}
      ${filters(index, st)}
      <div class="grid2">
        <div class="card"><div class="title-row"><h2>UMAP of decoder directions</h2>${hasMap ? mapToggle(index, st) : ''}</div>${hasMap ? `<div class="umap-wrap"><canvas class="umap" id="umap"></canvas><div class="tip" id="tip"></div></div>
          <div class="legend" id="umap-legend">${mapLegend(index, st)}</div><p class="small muted">Hover for label and picture; click to open. ${SAE.esc(index.umap_method || '')}</p>`
          : '<p class="muted">No UMAP coordinates in the analysis (install the umap extra and rerun analyze).</p>'}</div>
        <div class="card"><h2>Features per dominant branch</h2>${SAE.countBars(index, index.dominant_counts)}
          <p class="small muted">Dominant branch: the branch in which the feature's decoder row holds more of its positive mass (in units of each channel's RMS activation) than this layer's typical feature, most significantly, if its q ≤ 0.01; otherwise <b>none</b>.</p>
          ${specialised(index)}</div>
      </div>
      ${SAE.conceptSummary(index)}
      <div class="card"><h2>Figures of the analysis</h2><div class="figs">${figs || '<span class="muted">No figures in the analysis.</span>'}</div></div>
      <div class="card"><h2>Features</h2><div id="tablebox"></div></div>
      <div class="card"><h2>Neurons</h2><div id="neurons"></div></div>`;
    if (SAE.pages.liveLink) SAE.pages.liveLink(document.getElementById('live-link'));
    if (SAE.pages.compareLinks) SAE.pages.compareLinks(document.getElementById('compare-links'), index.layer);
    wire(index, st, hasMap);
    neuronList(index);
  };

  function wire(index, st, hasMap) {
    let view = null, vis = null;
    const redraw = (mapToo) => {
      vis = visibleRows(index, st);
      const rows = sortedRows(index, st, vis);
      document.getElementById('tablebox').innerHTML = table(index, st, rows);
      document.getElementById('f-count').textContent = `${rows.length} shown`;
      if (mapToo && hasMap) view = SAE.umap(document.getElementById('umap'), index, { visible: vis, colours: mapColours(index, st) });
      SAE.debug = {
        umapXY: (id) => (view ? view.xy(SAE.rowOf(index, id)) : null),
        umapColour: (id) => (view ? view.colours[SAE.rowOf(index, id)] : null),
      };
    };
    const bind = (id, key) => document.getElementById(id).addEventListener('input', (e) => {
      st[key] = e.target.value; st.page = 0; redraw(true);
    });
    [['f-q', 'q'], ['f-branch', 'branch'], ['f-fmin', 'fmin'], ['f-fmax', 'fmax'], ['f-smin', 'smin']].forEach(([i, k]) => bind(i, k));
    if (document.getElementById('f-cat')) bind('f-cat', 'cat');
    document.querySelectorAll('#umap-colour button').forEach((b) => b.addEventListener('click', () => {
      st.colour = b.dataset.colour;
      document.querySelectorAll('#umap-colour button').forEach((x) => x.classList.toggle('on', x === b));
      document.getElementById('umap-legend').innerHTML = mapLegend(index, st);
      redraw(true);
    }));
    const box = document.getElementById('tablebox');
    box.addEventListener('click', (e) => {
      const th = e.target.closest('th');
      if (th && th.dataset.k && th.dataset.k !== 'thumb') {
        st.asc = st.sort === th.dataset.k ? !st.asc : ['id', 'label', 'cat'].includes(th.dataset.k);
        st.sort = th.dataset.k; st.page = 0; return redraw(false);
      }
      if (e.target.id === 'prev') { st.page--; return redraw(false); }
      if (e.target.id === 'next') { st.page++; return redraw(false); }
      const tr = e.target.closest('tr.row');
      if (tr && !e.target.closest('a')) location.hash = `#/${index.layer}/f/${tr.dataset.id}`;
    });
    redraw(true);
    if (hasMap) mapEvents(index, () => view);
  }

  function mapEvents(index, getView) {
    const canvas = document.getElementById('umap'), tip = document.getElementById('tip');
    const c = index.cols;
    const at = (e) => { const b = canvas.getBoundingClientRect(); return getView().pick(e.clientX - b.left, e.clientY - b.top); };
    canvas.addEventListener('mousemove', (e) => {
      const r = at(e);
      if (r < 0) { tip.style.display = 'none'; return; }
      const p = getView().xy(r);
      tip.innerHTML = `${SAE.img(c.thumb[r], '', '')}<b>#${c.id[r]}</b> ${SAE.esc(c.label[r])}<br>
        <span class="muted">${SAE.esc(c.dom[r])}${c.cat && c.cat[r] ? ' · ' + SAE.esc(c.cat[r]) : ''} · freq ${SAE.fmt(c.freq[r], 3)}</span>`;
      tip.style.display = 'block';
      tip.style.left = Math.min(p.x + 12, canvas.clientWidth - 180) + 'px';
      tip.style.top = p.y + 12 + 'px';
    });
    canvas.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
    canvas.addEventListener('click', (e) => {
      const r = at(e);
      if (r >= 0) location.hash = `#/${index.layer}/f/${c.id[r]}`;
    });
  }

  function neuronList(index) {
    const n = index.neurons || { id: [] }, L = SAE.esc(index.layer);
    const el = document.getElementById('neurons');
    if (!n.id.length) { el.innerHTML = '<p class="muted">No neuron files in the analysis.</p>'; return; }
    const chips = n.id.map((j, r) =>
      `<a class="chip" href="#/${L}/n/${j}" title="${SAE.esc(n.label[r])}">${j}${n.branch[r] ? ' · ' + SAE.esc(n.branch[r]) : ''}</a>`).join('');
    el.innerHTML = `<details${n.id.length <= 64 ? ' open' : ''}><summary>${n.id.length} neurons (channels) of ${L}</summary>
      <div class="chips">${chips}</div></details>`;
  }
})();
