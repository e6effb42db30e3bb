/* inception-sae site, SAE comparisons: one page per compared pair (#/compare/<k>) and each feature's matches. */
(function () {
  'use strict';
  const SAE = window.SAE;
  const compares = () => (SAE.site() && SAE.site().compares) || [];
  const orDash = (v) => (v == null ? '–' : v);
  const pairName = (c) => `${c.a} vs ${c.b}${c.same_layer ? ' (two SAEs, same layer)' : ''}`;

  /* Links to the comparison pages that involve ``layer`` (all of them without one). */
  SAE.pages.compareLinks = function (el, layer) {
    if (!el) return;
    const cs = compares().filter((c) => !layer || c.a === layer || c.b === layer);
    el.innerHTML = cs.map((c) => `<a href="#/compare/${c.index}" class="compare-link">compare ${SAE.esc(pairName(c))}</a>`).join(' · ');
  };

  function featLink(layer, id, onSite) {
    return onSite && SAE.hasLayer(layer) ? `<a href="#/${SAE.esc(layer)}/f/${id}">${id}</a>` : `${id}`;
  }

  /* The feature page's "matches in other SAEs / layers" card. */
  SAE.pages.matches = function (el, index, d) {
    const ms = d.matches || [];
    if (!el || !ms.length) return;
    const rows = ms.map((m) => {
      const c = compares()[m.pair] || {};
      const cell = (kind) => (m[kind] ? `${featLink(m.other_layer, m[kind][0], m.linked)} <span class="muted">${kind === 'cos' ? 'cos' : 'r'} ${SAE.fmt(m[kind][1], 3)}</span>` : '–');
      const nul = m.above_null == null ? '–' : m.above_null ? '<b>yes</b>' : m.position_tied ? 'no (position-tied)' : 'no';
      return `<tr><td class="l"><a href="#/compare/${m.pair}">${SAE.esc(pairName(c))}</a><br><span class="small muted">${SAE.esc(m.other_sae)}</span></td>
        <td>${cell('cos')}</td><td>${cell('corr')}</td><td>${nul}</td></tr>`;
    }).join('');
    el.innerHTML = `<div class="card" id="matchbox"><h2>Best matches in other SAEs and layers</h2>
      <p class="small muted">Decoder cosine (same layer) and activation correlation on the same image positions; "above null": the correlation beats this feature's own null (its best matches with the images shuffled, p &le; 1%); a position-tied feature (activation explained by its place in the image) is never a match.</p>
      <table class="matches"><tr><th class="l">comparison</th><th>decoder cosine</th><th>activation corr.</th><th>above null</th></tr>${rows}</table></div>`;
  };

  function shareTable(block, title) {
    if (!block) return '';
    const th = (block.a_to_b && block.a_to_b.best_share_above) ? Object.keys(block.a_to_b.best_share_above) : [];
    const line = (dir, group, n, sh, nul) => `<tr><td class="l">${dir}</td><td class="l">${SAE.esc(group)}</td><td>${n}</td>${th.map((t) => `<td>${SAE.pct(sh[t])}</td>`).join('')}<td>${nul == null ? '–' : SAE.pct(nul)}</td></tr>`;
    let rows = '';
    ['a_to_b', 'b_to_a'].forEach((dir) => {
      const s = block[dir];
      if (!s) return;
      const name = dir === 'a_to_b' ? 'A → B' : 'B → A';
      rows += line(name, 'all (best match)', s.n, s.best_share_above, s.share_above_null);
      rows += line(name, 'all (one-to-one)', s.n, s.one_to_one_share_above, null);
      Object.entries(s.by_branch || {}).forEach(([g, v]) => { rows += line(name, 'branch ' + g, v.n, v.share_above, v.share_above_null); });
      Object.entries(s.by_frequency || {}).forEach(([g, v]) => { rows += line(name, 'frequency ' + g, v.n, v.share_above, v.share_above_null); });
    });
    return `<div class="card"><h2>${title}</h2><p class="small muted">Share of features whose match reaches each threshold; one-to-one: ${SAE.esc(block.assignment)} assignment.</p>
      <table class="shares"><tr><th class="l">direction</th><th class="l">features</th><th>n</th>${th.map((t) => `<th>≥ ${t}</th>`).join('')}<th>above null</th></tr>${rows}</table></div>`;
  }

  function branchPairs(bp) {
    if (!bp) return '';
    const cols = [...new Set(Object.values(bp.table).flatMap((r) => Object.keys(r)))].sort();
    const rows = Object.keys(bp.table).sort().map((a) => `<tr><td class="l">${SAE.esc(a)}</td>${cols.map((b) => `<td>${bp.table[a][b] || 0}</td>`).join('')}</tr>`).join('');
    return `<div class="card" id="branchpairs"><h2>Dominant branch of each side of matched pairs</h2>
      <p>Same branch in <b>${SAE.pct(bp.same_branch_share)}</b> of ${bp.pairs_with_both_dominant} pairs with a dominant branch on both sides (chance from the margins: ${SAE.pct(bp.chance_same_branch)}).</p>
      <table><tr><th class="l">A \\ B</th>${cols.map((c) => `<th>${SAE.esc(c)}</th>`).join('')}</tr>${rows}</table></div>`;
  }

  SAE.pages.compare = function (k) {
    SAE.crumbs([{ text: 'compare' }, { text: String(k) }]);
    const app = SAE.app(), hash = location.hash;
    delete app.dataset.ready;
    return SAE.load('compare/' + k).then((p) => {
      SAE.banner(p.untrained != null ? p : SAE.siteModel());
      const s = p.summary, A = s.a, B = s.b;
      const pairs = p.pairs.map((r) => `<tr><td>${featLink(A.layer, r[0], p.on_site.a)}</td><td>${featLink(B.layer, r[1], p.on_site.b)}</td>
        <td>${SAE.fmt(r[2], 3)}</td><td>${SAE.fmt(r[3], 3)}</td><td>${r[4] == null ? '–' : r[4] ? 'yes' : r[7] ? 'no (position-tied)' : 'no'}</td><td>${SAE.esc(r[5] || '')}</td><td>${SAE.esc(r[6] || '')}</td></tr>`).join('');
      const act = s.activation, im = s.images;
      app.innerHTML = `<h1>Compare ${SAE.esc(A.layer)} and ${SAE.esc(B.layer)}</h1>
        <p class="muted">A: <code>${SAE.esc(A.path)}</code> (${A.d_sae} features, k=${A.k}) · B: <code>${SAE.esc(B.path)}</code> (${B.d_sae} features, k=${B.k})</p>
        ${im ? `<p class="small muted">Activation correlation on ${im.count} images × ${im.positions_per_image} positions (${SAE.esc(im.grid)}); null: ${SAE.esc(act.null.method)}; each feature's 99% null threshold A → B: median ${SAE.fmt(act.null.a_to_b.q99_median, 3)}; position-tied features: ${orDash(act.a_to_b.position_tied)} of A, ${orDash(act.b_to_a.position_tied)} of B.</p>` : ''}
        <div class="card"><img src="${SAE.esc(p.figure)}" alt="histogram of best matches" style="max-width:100%"></div>
        ${shareTable(s.decoder, 'Decoder cosine (same layer)')}${shareTable(act, 'Activation correlation (same image positions)')}
        ${act ? branchPairs(act.branch_pairs) : ''}
        <div class="card"><h2>Strongest matches (by ${p.ranked_by === 'corr' ? 'activation correlation' : 'decoder cosine'})</h2>
        <table class="pairs"><tr><th>A</th><th>B</th><th>cosine</th><th>correlation</th><th>above null</th><th>branch A</th><th>branch B</th></tr>${pairs}</table></div>`;
    }).then(() => { if (location.hash === hash) app.dataset.ready = hash; });
  };
})();
