/* inception-sae site, feature / neuron / class pages (one data file each, loaded on demand). */
(function () {
  'use strict';
  const SAE = window.SAE;
  const SIG_LEVEL = 0.05; // a top-image class is enriched at q <= this (the analysis's labels.LEVEL)

  function tile(ex) {
    const title = `${ex.image || ''} (y=${ex.y}, x=${ex.x})${ex.at_training_position ? ', a trained position' : ''}`;
    const mark = ex.at_training_position ? ' <span class="tp" title="its argmax is a position the SAE was trained on">trained</span>' : '';
    return `<div class="tile${ex.at_training_position ? ' at-train' : ''}" title="${SAE.esc(title)}"><div class="pair">${SAE.img(ex.crop, 'crop', 'receptive-field crop')}${SAE.img(ex.heatmap, 'heat', 'heatmap')}</div>
      <span class="v">${SAE.fmt(ex.value, 3)}</span>${mark} <span class="muted">${SAE.esc(String(ex.image || '').split('/').pop())}</span></div>`;
  }

  function examples(list, limit) {
    const xs = list || [];
    const shown = xs.filter((e) => e.crop || e.heatmap);
    const rest = xs.filter((e) => !(e.crop || e.heatmap)).slice(0, limit == null ? 40 : limit);
    const chips = rest.map((e) => `<span class="chip" title="${SAE.esc(e.image)}">${SAE.fmt(e.value, 3)}</span>`).join('');
    return `<div class="ex">${shown.map(tile).join('') || '<span class="muted">No rendered examples.</span>'}</div>
      ${chips ? `<div class="chips"><span class="small muted">more:</span>${chips}</div>` : ''}`;
  }

  function intervals(d) {
    const ranges = d.interval_ranges || [];
    const groups = {};
    (d.intervals || []).forEach((e) => { (groups[e.interval == null ? 0 : e.interval] = groups[e.interval == null ? 0 : e.interval] || []).push(e); });
    const keys = ranges.length ? ranges.map((_, i) => i) : Object.keys(groups).map(Number).sort((a, b) => a - b);
    if (!keys.length) return '<p class="muted">No interval examples.</p>';
    return '<div class="intervals">' + keys.map((i) => {
      const g = groups[i] || [], r = ranges[i] || g[0] || {};
      const pic = g.find((e) => e.crop || e.heatmap);
      const vals = g.map((e) => SAE.fmt(e.value, 2)).join(', ');
      const [lo, hi] = SAE.range(r.lo, r.hi, 2);
      return `<div class="iv"><div class="r">[${lo}, ${hi})${r.count != null ? ` · ${r.count}` : ''}</div>
        ${pic ? tile(pic) : ''}<div class="small muted">${vals}</div></div>`;
    }).join('') + '</div>';
  }

  /* The examples on two distributions when the analysis has them: the positions the SAE was trained on (the harvest
     rule's; shown first) and every position. Each is {top_examples, intervals, interval_ranges} of the same format. */
  function exampleSets(d) {
    const every = { key: 'every', name: 'every position', data: d };
    const t = d.training_examples;
    return t ? [{ key: 'trained', name: 'trained positions', data: t }, every] : [every];
  }

  function exampleNote(d, set) {
    if (set.key === 'trained') {
      const n = (set.data.counts || {}).images;
      if (n === 0) return '<span class="err" id="no-trained">It never fires at a trained position: no examples on the distribution the SAE was trained on.</span>';
      return `On the positions the SAE was trained on: ${SAE.esc(set.data.positions || 'the harvest rule\'s positions')}. ${n != null ? n : '–'} images fire at one of them.`;
    }
    const flagged = (d.top_examples || []).filter((e) => e.at_training_position != null);
    const at = flagged.filter((e) => e.at_training_position).length;
    return 'Per image, the feature\'s max over every position.' +
      (flagged.length ? ` <span id="at-train-count">${at} of ${flagged.length}</span> top examples have their argmax at a trained position (marked).` : '');
  }

  /* Draw the top examples and the intervals of one distribution, and mark its button. */
  function showExamples(d, sets, key) {
    const set = sets.find((x) => x.key === key) || sets[0];
    document.querySelectorAll('#ex-dist button').forEach((b) => b.classList.toggle('on', b.dataset.dist === set.key));
    document.getElementById('ex-note').innerHTML = exampleNote(d, set);
    document.getElementById('topex').innerHTML = examples(set.data.top_examples);
    const iv = document.getElementById('ivex');
    if (iv) {
      iv.innerHTML = intervals(set.data);
      document.getElementById('iv-dist').textContent = sets.length > 1 ? `(${set.name})` : '';
    }
  }

  function distToggle(sets) {
    if (sets.length < 2) return '';
    return '<div class="seg" id="ex-dist">' + sets.map((x) => `<button type="button" data-dist="${x.key}">${x.name}</button>`).join('') +
      '</div>';
  }

  function featvis(d) {
    const fv = d.featvis || [];
    if (!fv.length) return '<p class="muted">No feature visualisation for this one.</p>';
    const main = fv[0] ? `<a href="${SAE.esc(fv[0])}">${SAE.img(fv[0], 'main', 'feature visualisation')}</a>` : '';
    const div = fv.slice(1).map((p) => SAE.img(p, 'div', 'diverse variant')).join('');
    return `<div class="fv">${main}<div class="fv">${div}</div></div>${div ? '<p class="small muted">Diverse variants on the right.</p>' : ''}`;
  }

  function neighbours(list, siteIndex) {
    return SAE.bars(list, (n) => {
      const parts = String(n.id).split('/');
      let label = n.id;
      if (parts[1] === 'f' && SAE.cached(parts[0] + '/index')) {
        const ix = SAE.cached(parts[0] + '/index'), r = SAE.rowOf(ix, +parts[2]);
        if (r >= 0) label = `${n.id} · ${ix.cols.label[r]}`;
      }
      return `${SAE.nodeLink(n.id, label)} <span class="small muted">${SAE.esc(n.kind || '')}</span>`;
    });
  }

  function preloadNeighbourLayers(d) {
    const layers = new Set();
    (d.up || []).concat(d.down || []).forEach((n) => { const l = String(n.id).split('/')[0]; if (SAE.hasLayer(l)) layers.add(l); });
    return Promise.all([...layers].map((l) => SAE.load(l + '/index').catch(() => null)));
  }

  function classList(items) {
    return SAE.bars(items, (c) => `<a href="#/class/${c.index}">${SAE.esc(c.name)}</a>`);
  }

  function statRows(d) {
    return [['frequency', SAE.fmt(d.frequency, 4)], ['images where it fires', SAE.pct(d.frequency_image)],
      ['max', SAE.fmt(d.max, 3)], ['mean when firing', SAE.fmt(d.mean_when_firing, 3)],
      ['dead / dense', `${d.dead ? 'dead' : 'alive'} / ${d.dense ? 'dense' : 'sparse'}`]];
  }

  // Two columns when the analysis has them: the positions the SAE was trained on (the harvest rule's), and every position.
  function stats(d) {
    const t = d.training_positions;
    if (!t) {
      return '<div class="small muted">on every position of the analysed images</div><dl class="kv">' +
        statRows(d).map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('') + '</dl>';
    }
    const all = statRows(d), tr = statRows(t);
    return '<table class="kv stats-dist"><tr><th></th><th>trained positions</th><th>every position</th></tr>' +
      tr.map(([k, v], j) => `<tr><td>${k}</td><td>${v}</td><td>${all[j][1]}</td></tr>`).join('') + '</table>' +
      '<div class="small muted">trained positions: those the harvest rule selects in each image (the SAE\'s training distribution)</div>';
  }

  // Classes of the top images with count, share and q; the ratio to the base rate only beside a significant q
  // (on its own it says x50 for any class of a random feature when each class has one image).
  function labelClasses(d) {
    const lc = d.label_classes || [];
    if (!lc.length) return '';
    const tested = lc.some((c) => c.q != null);
    const items = lc.map((c) => {
      const sig = c.q != null && c.q <= SIG_LEVEL;
      const share = c.share != null ? ` (${SAE.pct(c.share, 0)})` : '';
      const q = c.q != null ? ` q ${SAE.pval(c.q)}` : '';
      const ratio = sig && c.enrichment != null ? `, ×${SAE.fmt(c.enrichment, 2)} the base rate` : '';
      return `<span class="lc${sig ? ' sig' : ''}"><a href="#/class/${c.index}">${SAE.esc(c.name)}</a> ${
        c.count != null ? c.count : ''}${share}${q}${ratio}</span>`;
    }).join(' · ');
    const verdict = !tested ? '' : d.label_significant
      ? `<span class="lc-verdict">bold: enriched at q ≤ ${SIG_LEVEL}</span>`
      : `<span class="lc-verdict">no class significant (q > ${SIG_LEVEL}): counts consistent with chance</span>`;
    const how = tested ? ' title="count (share) of the top images in the class; q: one-sided hypergeometric test against the analysed images, Benjamini–Hochberg over all directions × classes"' : '';
    return `<div class="small muted" id="label-classes"${how}>classes of the top images: ${items}${verdict ? ' — ' + verdict : ''}</div>`;
  }

  function header(index, d, kind, id) {
    const ids = kind === 'f' ? index.cols.id : (index.neurons || { id: [] }).id;
    const pos = ids.indexOf(id), L = SAE.esc(index.layer);
    const prev = pos > 0 ? `<a href="#/${L}/${kind}/${ids[pos - 1]}" id="prevf">‹ ${ids[pos - 1]}</a>` : '';
    const next = pos >= 0 && pos < ids.length - 1 ? `<a href="#/${L}/${kind}/${ids[pos + 1]}" id="nextf">${ids[pos + 1]} ›</a>` : '';
    const what = kind === 'f' ? 'feature' : 'neuron';
    return `<div class="title-row"><div><div class="muted">${L} · ${what} ${id}${d.branch ? ' · branch ' + SAE.esc(d.branch) : ''}</div>
      <h1>${SAE.esc(d.label || ('label_concept' in d ? 'no label' : '(no label)'))}</h1><div class="muted">${'label_concept' in d ? 'held-out F1' : 'label score'} ${SAE.fmt(d.label_score, 3)}
      ${d.label_kind ? `<span class="small">(${SAE.esc(d.label_kind)})</span>` : ''}</div>${labelClasses(d)}</div>
      <div class="prevnext">${prev}${next} · <a href="data/${L}/${kind}/${id}.js">data</a></div></div>`;
  }

  SAE.pages.feature = function (index, id) {
    const L = index.layer;
    SAE.crumbs([{ text: L, href: '#/' + L }, { text: 'feature ' + id }]);
    if (SAE.rowOf(index, id) < 0) return Promise.reject(new Error(`${L} has no feature ${id} on this site`));
    return SAE.load(`${L}/f/${id}`).then((d) => Promise.all([preloadNeighbourLayers(d), SAE.loadConcepts()]).then(() => drawFeature(index, id, d)));
  };

  function drawFeature(index, id, d) {
    const L = SAE.esc(index.layer), sn = d.similar_neuron || {};
    const hasMap = index.cols.x.some((v) => v != null);
    const dead = d.dead || (d.max != null && d.max <= 0);
    const sets = exampleSets(d);
    const legend = (d.up || []).length || (d.down || []).length ? SAE.signLegend('excites (positive weight)', 'inhibits (negative weight)') : '';
    SAE.app().innerHTML = `${header(index, d, 'f', id)}
      ${dead ? '<div class="card err" id="deadnote">Dead feature: it never fired on the analysed images, so its examples and intervals say nothing.</div>' : ''}
      ${SAE.labelSection(d)}
      <div class="grid3" style="margin-top:12px">
        <div class="card"><h2>Feature visualisation</h2>${featvis(d)}</div>
        <div class="card"><h2>Activation</h2>${stats(d)}<h3>Dominant branch</h3>${SAE.chip(index, d.dominant_branch)}${d.dominant_branch === 'none' ? '<p class="small muted">No branch significant at q ≤ 0.01.</p>' : ''}${d.dominant_branch_norm != null ? `<p class="small" id="dom-norm">By the norm share: ${SAE.chip(index, d.dominant_branch_norm)}${d.dominant_branch_norm !== d.dominant_branch ? ' <span class="muted">(the two shares disagree)</span>' : ''}</p>` : ''}</div>
        <div class="card"><h2>Position on the map</h2>${hasMap ? '<canvas class="umap" id="minimap"></canvas>' : '<p class="muted">No UMAP.</p>'}</div>
      </div>
      <div class="grid2"><div class="card"><h2>Branch shares vs the layer's typical feature</h2>${SAE.branchBars(index, d.branch_share, d.branch_p, d.dominant_branch, d.branch_q)}${d.branch_share_norm && d.branch_p_norm ? `<h3>Norm share</h3>${SAE.branchBars(index, d.branch_share_norm, d.branch_p_norm, d.dominant_branch_norm, d.branch_q_norm, index.null_norm, 'norm share ||d[b]|| / ||d||')}` : ''}</div>
        <div class="card"><h2>Activation density</h2>${SAE.histogram(d.histogram)}</div></div>
      <div class="card" id="topcard"><div class="title-row"><h2>Top examples</h2>${distToggle(sets)}</div><p class="small muted">Receptive-field crop and heatmap overlay; value = activation. <span id="ex-note"></span></p><div id="topex"></div></div>
      ${dead ? '' : '<div class="card"><h2>Across activation intervals <span class="muted small" id="iv-dist"></span></h2><div id="ivex"></div></div>'}
      <div class="card" id="neuronbox"><h2>Most similar neuron: ${sn.neuron != null ? `<a href="#/${L}/n/${sn.neuron}">neuron ${sn.neuron}</a>` : '–'}
        <span class="muted small">cosine ${SAE.fmt(sn.cosine, 3)}</span></h2><p class="small muted">Its top examples, to compare with the feature's above.</p><div id="neuronex" class="muted">…</div></div>
      <div class="grid2"><div class="card"><h2>Top classes</h2><p class="small muted">${SAE.esc(d.logit_effect_kind || index.logit_effect || '')}</p>${classList(d.top_classes)}</div>
        <div class="card"><h2>Bottom classes</h2>${classList(d.bottom_classes)}</div></div>
      <div class="grid2"><div class="card" id="upstream"><h2>Upstream circuit neighbours</h2>${neighbours(d.up)}${legend}</div>
        <div class="card" id="downstream"><h2>Downstream circuit neighbours</h2>${neighbours(d.down)}${legend}</div></div>
      <div id="matches"></div>`;
    showExamples(d, sets, sets[0].key);
    document.querySelectorAll('#ex-dist button').forEach((b) => b.addEventListener('click', () => showExamples(d, sets, b.dataset.dist)));
    if (SAE.pages.matches) SAE.pages.matches(document.getElementById('matches'), index, d);
    if (hasMap) SAE.umap(document.getElementById('minimap'), index, { highlight: SAE.rowOf(index, id), height: 210, radius: 1.5 });
    const box = document.getElementById('neuronex');
    if (sn.neuron == null) { box.textContent = 'No similar neuron recorded.'; return; }
    SAE.load(`${index.layer}/n/${sn.neuron}`).then((n) => {
      box.className = '';
      box.innerHTML = `<div class="muted small">${SAE.esc(n.label || '')}</div>${featvis(n).includes('<img') ? featvis(n) : ''}${examples((n.top_examples || []).slice(0, 6), 0)}`;
    }).catch(() => { box.textContent = 'The neuron has no page on this site.'; });
  }

  SAE.pages.neuron = function (index, id) {
    const L = index.layer;
    SAE.crumbs([{ text: L, href: '#/' + L }, { text: 'neuron ' + id }]);
    if (!(index.neurons || { id: [] }).id.includes(id)) return Promise.reject(new Error(`${L} has no neuron ${id} on this site`));
    return Promise.all([SAE.load(`${L}/n/${id}`), SAE.loadConcepts()]).then(([d]) => {
      const feats = (d.similar_features || []).map(([f, cos]) => {
        const r = SAE.rowOf(index, f);
        return { weight: cos, html: SAE.nodeLink(`${L}/f/${f}`, `feature ${f}${r >= 0 ? ' · ' + index.cols.label[r] : ''}`) };
      });
      SAE.app().innerHTML = `${header(index, d, 'n', id)}
        ${SAE.labelSection(d)}
        <div class="grid3" style="margin-top:12px"><div class="card"><h2>Feature visualisation</h2>${featvis(d)}</div>
          <div class="card"><h2>Activation</h2>${stats(d)}</div>
          <div class="card"><h2>SAE features closest to this neuron</h2>${SAE.bars(feats, (x) => x.html)}</div></div>
        <div class="card"><h2>Activation density</h2>${SAE.histogram(d.histogram)}</div>
        <div class="card"><h2>Top examples</h2>${examples(d.top_examples)}</div>
        <div class="card"><h2>Across activation intervals</h2>${intervals(d)}</div>`;
    });
  };

  /* A layer whose analysis has no logit effects has no class data: say why instead of failing to load it. */
  function noClasses(index) {
    const L = SAE.esc(index.layer);
    SAE.app().innerHTML = `<h1>${L}: no class view</h1><div class="card" id="no-classes">
      <p>The class view lists, for each output class, the features whose decoder direction raises that class's logit most.
      It needs the analysis's logit effects, and this analysis has none: ${SAE.esc(index.logit_effect || 'not computed')}.</p>
      <p class="muted">Analyse the layer again with logit effects on to get it; the <a href="#/${L}">feature table</a> has every feature's label.</p></div>`;
    return Promise.resolve();
  }

  SAE.pages.classes = function (index) {
    const L = index.layer;
    SAE.crumbs([{ text: L, href: '#/' + L }, { text: 'classes' }]);
    if (!index.classes) return noClasses(index);
    return SAE.load(`${L}/classes`).then((c) => {
      SAE.app().innerHTML = `<h1>${SAE.esc(L)}: classes and their top features</h1><p class="muted">${SAE.esc(c.kind || '')}</p>
        <div class="card"><div class="chips">${c.classes.map((k) => `<a class="chip" href="#/${SAE.esc(L)}/class/${k.index}">${SAE.esc(k.name)}</a>`).join('')}</div></div>`;
    });
  };

  SAE.pages.klass = function (index, cls) {
    const L = index.layer;
    SAE.crumbs([{ text: L, href: '#/' + L }, { text: 'classes', href: `#/${L}/classes` }, { text: 'class ' + cls }]);
    if (!index.classes) return noClasses(index);
    return SAE.load(`${L}/classes`).then((c) => {
      const k = c.classes.find((x) => x.index === cls);
      if (!k) throw new Error(`class ${cls} is not in ${L}'s class data`);
      const items = k.features.map((f) => {
        const r = SAE.rowOf(index, f.id);
        return { weight: f.weight, html: `${r >= 0 ? SAE.img(index.cols.thumb[r], '', '') : ''} ${SAE.nodeLink(`${L}/f/${f.id}`, `feature ${f.id}${r >= 0 ? ' · ' + index.cols.label[r] : ''}`)}` };
      });
      SAE.app().innerHTML = `<div class="muted">${SAE.esc(L)} · class ${cls}</div><h1>${SAE.esc(k.name)}</h1>
        <p class="muted">${SAE.esc(c.kind || '')}</p><div class="card" id="classfeatures"><h2>Top features</h2>${SAE.bars(items, (x) => x.html)}</div>`;
    });
  };
})();
