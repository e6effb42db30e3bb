/* inception-sae site, concept labels: a unit's label section, the layer's label summary, the concept pages.
   A label is a WordNet node above the classes (or a class, or a set of classes), chosen on one half of the
   images and scored on the other; data/concepts.js lists every node with a labelled unit under it. */
(function () {
  'use strict';
  const SAE = window.SAE;
  const WNID = /^n\d{8}$/;

  /* Top-level categories (the analysis's CATEGORIES) and their colours; no label in grey. */
  SAE.CATEGORY_COLOURS = {
    person: '#e7298a', animal: '#d95f02', plant: '#1b9e77', fungus: '#a6761d', food: '#e6ab02',
    'geological formation': '#7570b3', artifact: '#2764c4', 'natural object': '#66a61e', other: '#555', mixed: '#999',
  };
  SAE.NO_LABEL_COLOUR = '#c8ccd1';
  SAE.categoryColour = (cat) => (!cat ? SAE.NO_LABEL_COLOUR : SAE.CATEGORY_COLOURS[cat] || '#444');
  SAE.catChip = (cat) =>
    cat ? `<span class="cchip" style="background:${SAE.categoryColour(cat)}">${SAE.esc(cat)}</span>` : '';

  /* The concept index, when the site has one (loaded once; null otherwise). */
  SAE.loadConcepts = function () {
    const site = SAE.site();
    if (!site || !site.concepts) return Promise.resolve(null);
    return SAE.load('concepts').catch(() => null);
  };
  function conceptKnown(wnid) {
    const c = SAE.cached('concepts');
    if (!c) return false;
    if (!c._set) c._set = new Set(c.nodes.map((n) => n.wnid));
    return c._set.has(wnid);
  }
  /* A node's name, linked to its concept page when the site has one. */
  SAE.conceptLink = function (wnid, name) {
    const text = SAE.esc(name || wnid);
    return WNID.test(String(wnid)) && conceptKnown(wnid)
      ? `<a class="concept" href="#/concept/${encodeURIComponent(wnid)}" title="${SAE.esc(wnid)}">${text}</a>` : text;
  };

  function termsHtml(lc) {
    const terms = lc.terms || [];
    if (!terms.length) return SAE.esc(lc.text || '');
    return terms.map((t) => SAE.conceptLink(t.key, t.name)).join(' + ');
  }

  function kindText(lc) {
    const t = (lc.terms || [])[0] || {};
    if (lc.kind === 'class') return 'an ImageNet class';
    if (lc.kind === 'ancestor') {
      const d = lc.depth != null ? lc.depth : t.depth;
      return `a WordNet ancestor${d != null ? ` at depth ${d}` : ''}${t.classes != null ? `, covering ${t.classes} classes` : ''}`;
    }
    if (lc.kind === 'classes') return `a combination of ${(lc.terms || []).length} classes`;
    return SAE.esc(lc.kind || '–');
  }

  /* "F1 0.6 vs baseline 0.33 (p 1.0e-6, q 1.0e-5)" */
  function versus(x, value) {
    const v = value != null ? value : x.value;
    const q = x.q != null ? `, q ${SAE.pval(x.q)}` : '';
    return `${SAE.fmt(v, 3)} vs baseline ${SAE.fmt(x.baseline, 3)} <span class="muted">(p ${SAE.pval(x.p)}${q})</span>`;
  }

  const METRICS = [['f1', 'F1'], ['iou', 'IoU'], ['auprc', 'AUPRC'], ['pearson', 'Pearson r']];

  function scoreTable(lc) {
    const s = lc.scores || {};
    const hasQ = METRICS.some(([k]) => s[k] && s[k].q != null);
    const rows = METRICS.filter(([k]) => s[k]).map(([k, name]) => {
      const x = s[k];
      return `<tr data-m="${k}"><td class="l">${name}</td><td>${SAE.fmt(x.value, 3)}</td><td>${SAE.fmt(x.baseline, 3)}</td>
        <td>${SAE.pval(x.p)}</td>${hasQ ? `<td>${x.q != null ? SAE.pval(x.q) : '–'}</td>` : ''}</tr>`;
    });
    if (s.auroc) {
      rows.push(`<tr class="secondary" data-m="auroc"><td class="l">AUROC</td><td>${SAE.fmt(s.auroc.value, 3)}</td>
        <td colspan="${hasQ ? 3 : 2}" class="l small muted">${SAE.esc(s.auroc.note || 'secondary')}</td></tr>`);
    }
    if (!rows.length) return '<p class="muted small">No scores.</p>';
    return `<table class="scores" id="label-scores"><tr><th class="l">held-out score</th><th>value</th><th>baseline</th>
      <th>p</th>${hasQ ? '<th>q</th>' : ''}</tr>${rows.join('')}</table>
      <p class="small muted">Baseline: the same score for permuted concept memberships; p: its permutation p-value.</p>`;
  }

  function imagesText(lc) {
    const im = lc.images || {};
    if (im.score == null && im.choice == null) return '';
    return `<p class="small" id="label-images">Chosen on ${im.choice != null ? im.choice : '–'} images, scored on
      ${im.score != null ? im.score : '–'} held-out images: ${im.in_concept != null ? im.in_concept : '–'} in the concept,
      ${im.firing != null ? im.firing : '–'} where it fires${lc.fires ? ` (${SAE.esc(lc.fires)})` : ''},
      ${im.both != null ? im.both : '–'} both.${lc.choice_f1 != null ? ` F1 on the choice half: ${SAE.fmt(lc.choice_f1, 3)}.` : ''}</p>`;
  }

  function qualifiers(lc) {
    const row = (name, x) => {
      if (!x) return `<tr data-q="${name}"><td class="l">${name}</td><td class="l muted" colspan="3">not tested</td></tr>`;
      const verdict = x.labelled ? '<b>labelled</b>' : '<span class="muted">not labelled</span>';
      return `<tr data-q="${name}"${x.units != null ? ` title="${SAE.esc(x.units)} units tested"` : ''}><td class="l">${name}</td>
        <td class="l">${SAE.esc(x.text)}</td><td class="l">${verdict}</td><td class="l">F1 ${versus(x, x.f1)}</td></tr>`;
    };
    const ext = lc.extent;
    const extent = ext ? `<p class="small" id="label-extent">Extent: where it fires, it covers ${SAE.pct(ext.share)} of the image
      on average${ext.images != null ? ` (${ext.images} images)` : ''}${ext.layer_median != null ? `; the layer's median feature: ${SAE.pct(ext.layer_median)}` : ''}.</p>` : '';
    return `<table class="scores quals" id="label-quals">${row('where', lc.where)}${row('colour', lc.colour)}</table>${extent}`;
  }

  function runners(lc) {
    const r = lc.runner_up || [];
    if (!r.length) return '';
    const items = r.map((x) => `<li>${x.key ? SAE.conceptLink(x.key, x.text) : SAE.esc(x.text)}
      <span class="small muted">${SAE.esc(x.kind || '')}</span> ${SAE.catChip(x.category)} F1 ${versus(x, x.f1)}</li>`).join('');
    return `<h3>Runner-up concepts</h3><ul class="plain" id="label-runners">${items}</ul>`;
  }

  /* Share of the held-out examples in the concept, per tenth of the unit's max (SVG bars). */
  function spectrum(lc) {
    const sp = lc.spectrum || [];
    if (!sp.length) return '';
    const W = 420, H = 150, L = 34, B = 30, bw = (W - L - 4) / sp.length;
    let body = '';
    sp.forEach((b, i) => {
      const share = b.images ? Math.min(1, Math.max(0, b.in_concept / b.images)) : 0;
      const h = (H - B - 14) * share, x = L + i * bw, y = H - B - h;
      body += `<rect x="${x + 1}" y="${y}" width="${Math.max(1, bw - 2)}" height="${h}" fill="#2764c4"><title>${SAE.range(b.lo, b.hi, 2).join('–')} of the max: ${b.in_concept} of ${b.images} in the concept</title></rect>`;
      body += `<text x="${x + bw / 2}" y="${Math.min(y - 2, H - B - 2)}" text-anchor="middle">${b.images ? Math.round(100 * share) : '–'}</text>`;
      body += `<text x="${x + bw / 2}" y="${H - B + 12}" text-anchor="middle">${SAE.fmt(b.lo, 1)}</text>`;
    });
    return `<h3>Concept share across activation</h3><svg id="label-spectrum" viewBox="0 0 ${W} ${H}" width="100%" style="max-width:${W}px" role="img" aria-label="concept share per tenth of the max">
      <line x1="${L}" x2="${W - 4}" y1="${H - B}" y2="${H - B}" stroke="#555"/>${body}
      <text x="${L}" y="${H - 4}">tenth of the max activation (held-out examples) →</text><text x="2" y="10">% in the concept</text></svg>`;
  }

  function whyNot(lc) {
    if (!lc) return '<p class="small muted" id="label-why">No concept was tested for this one (too few images where it fires, or none).</p>';
    const f1 = (lc.scores || {}).f1 || {};
    return `<p class="small" id="label-why">No concept passed its test${lc.level != null ? ` at level ${SAE.fmt(lc.level, 3)}` : ''}.
      Best candidate: ${termsHtml(lc)} <span class="muted">(${kindText(lc)})</span>, held-out F1 ${versus(f1)}.</p>`;
  }

  /* The "Label" card of a feature or neuron page ('' for analyses written before concept labels). */
  SAE.labelSection = function (d) {
    if (!d || !('label_concept' in d)) return '';
    const lc = d.label_concept;
    if (!lc || !lc.labelled) {
      const detail = lc ? `<div class="grid2"><div>${scoreTable(lc)}${imagesText(lc)}</div><div>${spectrum(lc)}${runners(lc)}</div></div>` : '';
      return `<div class="card" id="labelcard"><h2>Label</h2><div class="label-head nolabel" id="label-text">no label</div>
        ${whyNot(lc)}${detail}</div>`;
    }
    const quals = ['where', 'colour'].filter((k) => lc[k] && lc[k].labelled).map((k) => ' · ' + SAE.esc(lc[k].text)).join('');
    return `<div class="card" id="labelcard"><h2>Label</h2>
      <div class="label-head" id="label-text">${termsHtml(lc)}${quals}</div>
      <dl class="kv" id="label-facts"><dt>concept</dt><dd id="label-kind">${kindText(lc)}</dd>
        <dt>category</dt><dd>${SAE.catChip(lc.category) || '–'}</dd>
        <dt>fires</dt><dd>${SAE.esc(lc.fires || '–')}</dd>
        ${lc.level != null ? `<dt>test level</dt><dd>q ≤ ${SAE.fmt(lc.level, 3)}</dd>` : ''}</dl>
      <div class="grid2"><div>${scoreTable(lc)}${imagesText(lc)}${qualifiers(lc)}</div><div>${spectrum(lc)}${runners(lc)}</div></div></div>`;
  };

  /* ----- the layer page: summary.json's labels.concepts ----- */

  function countList(counts, chip) {
    const keys = Object.keys(counts || {});
    if (!keys.length) return '<span class="muted">none</span>';
    return keys.sort((a, b) => counts[b] - counts[a]).map((k) => `${chip ? chip(k) : SAE.esc(k)} ${counts[k]}`).join(' · ');
  }

  function categoryByBranch(index, cb) {
    const cats = Object.keys(cb || {});
    if (!cats.length) return '';
    const branches = index.branches.concat(['none']);
    Object.values(cb).forEach((row) => Object.keys(row).forEach((b) => { if (!branches.includes(b)) branches.push(b); }));
    const colTotal = {};
    branches.forEach((b) => { colTotal[b] = cats.reduce((s, c) => s + (cb[c][b] || 0), 0); });
    const total = (c) => branches.reduce((s, b) => s + (cb[c][b] || 0), 0);
    cats.sort((a, b) => total(b) - total(a));
    const cell = (c, b) => {
      const n = cb[c][b] || 0, col = colTotal[b];
      return `<td data-b="${SAE.esc(b)}" title="${n} of the ${col} labelled ${SAE.esc(b)} features">${n}${n && col ? ` <small class="muted">${Math.round(100 * n / col)}%</small>` : ''}</td>`;
    };
    const head = branches.map((b) => `<th>${b === 'none' ? 'none' : SAE.chip(index, b)}</th>`).join('');
    const rows = cats.map((c) => `<tr data-cat="${SAE.esc(c)}"><td class="l">${SAE.catChip(c)}</td>${branches.map((b) => cell(c, b)).join('')}<td><b>${total(c)}</b></td></tr>`).join('');
    const foot = `<tr><td class="l muted">all labelled</td>${branches.map((b) => `<td><b>${colTotal[b]}</b></td>`).join('')}<td></td></tr>`;
    return `<h3>Category × dominant branch</h3><table class="scores" id="cat-branch"><tr><th class="l">category \\ branch</th>${head}<th>all</th></tr>${rows}${foot}</table>
      <p class="small muted">Labelled features by the category of their label (rows) and their dominant branch (columns); % of the column: how much of a branch's labelled features are of that category.</p>`;
  }

  SAE.conceptSummary = function (index) {
    const c = (index.labels || {}).concepts;
    if (!c) return '';
    const sp = c.split || {};
    return `<div class="card" id="concept-summary"><h2>Concept labels</h2>
      <p class="small muted">${SAE.esc(c.method || '')}</p>
      <div class="metrics">
        <div class="metric"><b id="labelled-count">${c.labelled != null ? c.labelled : '–'}</b><span>labelled of ${c.scored != null ? c.scored : '–'} scored</span>${c.level != null ? `<small class="metric-on">at q ≤ ${SAE.fmt(c.level, 3)}</small>` : ''}</div>
        ${sp.choice != null ? `<div class="metric"><b>${sp.choice} / ${sp.score}</b><span>images: choice / score</span><small class="metric-on">${SAE.esc(sp.how || '')}</small></div>` : ''}
      </div>
      <dl class="kv" style="margin-top:8px"><dt>by category</dt><dd id="by-category">${countList(c.by_category, SAE.catChip)}</dd>
        <dt>by kind</dt><dd>${countList(c.by_kind)}</dd><dt>where</dt><dd>${countList(c.where)}</dd><dt>colour</dt><dd>${countList(c.colour)}</dd></dl>
      ${categoryByBranch(index, c.category_by_branch)}
      ${SAE.site().concepts ? '<p class="small"><a href="#/concepts">All concepts, across layers →</a></p>' : ''}</div>`;
  };

  /* ----- concept pages (#/concepts, #/concept/<wnid>) ----- */

  function noConcepts() {
    SAE.app().innerHTML = `<h1>Concepts</h1><div class="card" id="no-concepts"><p>No unit on this site has a concept label:
      its analyses were written before concept labels, or nothing passed its test.</p><p><a href="#/">Back to the start page</a></p></div>`;
  }

  SAE.pages.concepts = function () {
    SAE.crumbs([{ text: 'concepts' }]);
    SAE.banner(null);
    return SAE.loadConcepts().then((c) => {
      if (!c) return noConcepts();
      const layers = c.layers || [];
      const draw = (q) => {
        const needle = q.trim().toLowerCase();
        const rows = c.nodes.filter((n) => !needle || n.name.toLowerCase().includes(needle) || n.wnid === needle);
        document.getElementById('concept-rows').innerHTML = rows.map((n) => `<tr data-wnid="${SAE.esc(n.wnid)}">
          <td class="l"><a href="#/concept/${encodeURIComponent(n.wnid)}">${SAE.esc(n.name)}</a></td><td class="l muted small">${SAE.esc(n.wnid)}</td>
          <td>${n.depth != null ? n.depth : '–'}</td><td class="l">${SAE.catChip(n.category)}</td><td><b>${n.features}</b></td>
          ${layers.map((l) => `<td>${(n.layers || {})[l] || ''}</td>`).join('')}<td>${n.neurons || ''}</td></tr>`).join('');
        document.getElementById('concept-count').textContent = `${rows.length} of ${c.nodes.length} concepts`;
      };
      SAE.app().innerHTML = `<h1>Concepts across layers</h1>
        <p class="muted">Every WordNet node with at least one labelled unit under it (a "dog" label also counts for canine, carnivore, mammal…).
        ${c.wordnet ? '' : 'Names and depths from the labels themselves (this package has no WordNet hierarchy).'}</p>
        <div class="filters"><label>search concepts<input id="concept-q" type="search" placeholder="e.g. dog"></label><span class="small muted" id="concept-count"></span></div>
        <div class="card"><table class="ft" id="concept-index"><thead><tr><th>concept</th><th>wnid</th><th>depth</th><th>category</th><th>features</th>
        ${layers.map((l) => `<th>${SAE.esc(l)}</th>`).join('')}<th>neurons</th></tr></thead><tbody id="concept-rows"></tbody></table></div>`;
      document.getElementById('concept-q').addEventListener('input', (e) => draw(e.target.value));
      draw('');
    });
  };

  SAE.pages.concept = function (wnid) {
    SAE.crumbs([{ text: 'concepts', href: '#/concepts' }, { text: wnid }]);
    SAE.banner(null);
    return SAE.loadConcepts().then((c) => {
      if (!c) return noConcepts();
      if (!conceptKnown(wnid)) throw new Error(`no labelled unit on this site lies under concept ${wnid}`);
      return SAE.load('concept/' + wnid).then((n) => drawConcept(n));
    });
  };

  function unitRows(units) {
    return units.map((u) => {
      const what = u.kind === 'f' ? 'feature' : 'neuron';
      const href = `#/${encodeURIComponent(u.layer)}/${u.kind}/${u.id}`;
      return `<tr class="row" data-layer="${SAE.esc(u.layer)}" data-id="${u.id}" data-kind="${u.kind}"><td class="l">${SAE.esc(u.layer)}</td>
        <td class="l"><a href="${href}">${what} ${u.id}</a></td><td>${SAE.img(u.thumb, '', '')}</td><td class="l">${SAE.esc(u.label)}</td>
        <td class="l small">${SAE.esc(u.concept_kind || '')}${u.direct ? '' : ' <span class="muted">(below)</span>'}</td><td class="num">${SAE.fmt(u.f1, 3)}</td></tr>`;
    }).join('');
  }

  const SHOWN = 500; // rows drawn before "show all" (a node near the root holds most labelled units of the site)

  function unitTable(id, units) {
    const more = units.length > SHOWN
      ? `<p><button type="button" class="more" data-for="${id}">show all ${units.length}</button> <span class="small muted">(first ${SHOWN} shown)</span></p>` : '';
    return `<table class="ft" id="${id}"><thead><tr><th>layer</th><th>unit</th><th></th><th>label</th><th>label kind</th><th>F1 (held out)</th></tr></thead>
      <tbody>${unitRows(units.slice(0, SHOWN))}</tbody></table>${more}`;
  }

  function drawConcept(n) {
    SAE.crumbs([{ text: 'concepts', href: '#/concepts' }, { text: n.name }]);
    const feats = n.units.filter((u) => u.kind === 'f'), neurons = n.units.filter((u) => u.kind === 'n');
    const perLayer = {};
    feats.forEach((u) => { perLayer[u.layer] = (perLayer[u.layer] || 0) + 1; });
    const layers = Object.keys(perLayer);
    const broader = (n.broader || []).slice().reverse().map((b) => SAE.conceptLink(b.wnid, b.name)).join(' › ');
    const narrower = (n.narrower || []).map((b) => `<a class="chip" href="#/concept/${encodeURIComponent(b.wnid)}">${SAE.esc(b.name)} · ${b.features}</a>`).join('');
    SAE.app().innerHTML = `<div class="muted">concept ${SAE.esc(n.wnid)}${n.depth != null ? ` · depth ${n.depth}` : ''} ${SAE.catChip(n.category)}</div>
      <h1>${SAE.esc(n.name)}</h1>
      ${broader ? `<p class="small" id="broader">Under: ${broader} › <b>${SAE.esc(n.name)}</b></p>` : ''}
      <p class="muted" id="concept-facts">${feats.length} labelled feature${feats.length === 1 ? '' : 's'} in ${layers.length} layer${layers.length === 1 ? '' : 's'}${neurons.length ? `, ${neurons.length} neuron${neurons.length === 1 ? '' : 's'}` : ''}: every unit whose label lies under this node (its label's own node, or one below it), or names it as one of its classes.
        ${layers.length > 1 ? `<br><span class="small" id="concept-layers">${layers.map((l) => `${SAE.esc(l)}: ${perLayer[l]}`).join(' · ')}</span>` : ''}</p>
      ${narrower ? `<div class="card"><h2>Narrower concepts</h2><div class="chips" id="narrower">${narrower}</div></div>` : ''}
      <div id="concept-units"><div class="card"><h2>Features</h2>${feats.length ? unitTable('concept-features', feats) : '<p class="muted">None.</p>'}</div>
      ${neurons.length ? `<div class="card"><h2>Neurons</h2>${unitTable('concept-neurons', neurons)}</div>` : ''}</div>`;
    document.getElementById('concept-units').addEventListener('click', (e) => {
      const more = e.target.closest('button.more');
      if (more) {
        const units = more.dataset.for === 'concept-features' ? feats : neurons;
        document.querySelector(`#${more.dataset.for} tbody`).innerHTML = unitRows(units);
        more.parentNode.remove();
        return;
      }
      const tr = e.target.closest('tr.row');
      if (tr && !e.target.closest('a')) location.hash = `#/${tr.dataset.layer}/${tr.dataset.kind}/${tr.dataset.id}`;
    });
  }
})();
