/* inception-sae site, charts: UMAP canvas, histogram, branch shares vs the null, class bars (SVG). */
(function () {
  'use strict';
  const SAE = window.SAE;

  /* id -> row of the layer table (built once per layer index). */
  SAE.rowOf = function (index, id) {
    if (!index._rows) {
      index._rows = new Map();
      index.cols.id.forEach((v, r) => index._rows.set(v, r));
    }
    const r = index._rows.get(id);
    return r == null ? -1 : r;
  };

  /* Draw the UMAP scatter on a canvas; returns {pick(px, py) -> row, xy(row) -> css px}. */
  SAE.umap = function (canvas, index, opts) {
    const o = opts || {};
    const xs = index.cols.x, ys = index.cols.y;
    const n = xs.length;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      if (xs[i] == null) continue;
      x0 = Math.min(x0, xs[i]); x1 = Math.max(x1, xs[i]); y0 = Math.min(y0, ys[i]); y1 = Math.max(y1, ys[i]);
    }
    const cssW = canvas.clientWidth || 600, cssH = o.height || Math.round(cssW * 0.72);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = cssW * dpr; canvas.height = cssH * dpr; canvas.style.height = cssH + 'px';
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const pad = 10, sx = (cssW - 2 * pad) / (x1 - x0 || 1), sy = (cssH - 2 * pad) / (y1 - y0 || 1);
    const px = (r) => pad + (xs[r] - x0) * sx, py = (r) => cssH - pad - (ys[r] - y0) * sy;
    const rad = o.radius || (n > 4000 ? 1.6 : n > 500 ? 2.4 : 3.5);
    const colours = o.colours || index.cols.dom.map((b) => SAE.branchColour(index, b));
    for (let r = 0; r < n; r++) {  // hidden points first, in light grey
      if (xs[r] == null || !o.visible || o.visible[r]) continue;
      ctx.fillStyle = '#dde1e5'; ctx.fillRect(px(r) - 1, py(r) - 1, 2, 2);
    }
    for (let r = 0; r < n; r++) {
      if (xs[r] == null || (o.visible && !o.visible[r])) continue;
      ctx.fillStyle = o.highlight != null ? '#b8c0c8' : colours[r];
      ctx.beginPath(); ctx.arc(px(r), py(r), rad, 0, 6.2832); ctx.fill();
    }
    if (o.highlight != null && o.highlight >= 0 && xs[o.highlight] != null) {
      const r = o.highlight;
      ctx.fillStyle = '#d62728'; ctx.strokeStyle = '#000'; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(px(r), py(r), 6, 0, 6.2832); ctx.fill(); ctx.stroke();
    }
    return {
      colours,
      xy: (r) => ({ x: px(r), y: py(r) }),
      pick(mx, my) {
        let best = -1, bd = 64;  // within 8 css px
        for (let r = 0; r < n; r++) {
          if (xs[r] == null || (o.visible && !o.visible[r])) continue;
          const dx = px(r) - mx, dy = py(r) - my, d = dx * dx + dy * dy;
          if (d < bd) { bd = d; best = r; }
        }
        return best;
      },
    };
  };

  /* Activation-density histogram on a log10 axis ({log10_lo, log10_hi, bins, counts}). */
  SAE.histogram = function (h) {
    if (!h || !h.counts || !h.counts.length) return '<p class="muted">No histogram in the analysis.</p>';
    const W = 520, H = 150, L = 40, B = 26, n = h.counts.length;
    const max = Math.max(1, ...h.counts), bw = (W - L - 6) / n;
    let bars = '';
    h.counts.forEach((c, i) => {
      const bh = (H - B - 8) * Math.sqrt(c / max);
      bars += `<rect x="${L + i * bw}" y="${H - B - bh}" width="${Math.max(1, bw - 1)}" height="${bh}" fill="#2764c4"><title>${c}</title></rect>`;
    });
    let ticks = '';
    for (let e = Math.ceil(h.log10_lo); e <= h.log10_hi; e += 2) {
      const x = L + ((e - h.log10_lo) / (h.log10_hi - h.log10_lo)) * (W - L - 6);
      ticks += `<line x1="${x}" x2="${x}" y1="${H - B}" y2="${H - B + 4}" stroke="#555"/><text x="${x}" y="${H - 8}" text-anchor="${e + 2 > h.log10_hi ? 'end' : 'middle'}">1e${e}</text>`;
    }
    return `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="activation histogram">
      <line x1="${L}" x2="${W - 6}" y1="${H - B}" y2="${H - B}" stroke="#555"/>${bars}${ticks}
      <text x="4" y="12">count (√)</text></svg>
      <p class="small muted">${SAE.esc(h.note || 'positive activations, log-spaced bins')}</p>`;
  };

  /* Per branch: the feature's share (bar) against the typical features' 5–95% band and median (tick). */
  SAE.branchBars = function (index, share, pvals, dominant, qvals, band, what) {
    const names = index.branches.length ? index.branches : Object.keys(share || {});
    if (!share || !names.length) return '<p class="muted">No branch shares in the analysis.</p>';
    const W = 560, row = 28, L = 60, R = 170, H = names.length * row + 24, span = W - L - R;
    let body = '';
    names.forEach((b, i) => {
      const y = 8 + i * row, s = share[b] || 0, nl = (band || index.null || {})[b];
      if (nl && nl[0] != null) {
        body += `<rect x="${L + nl[0] * span}" y="${y}" width="${Math.max(1, (nl[2] - nl[0]) * span)}" height="18" fill="#d9dde2"><title>typical features 5–95%</title></rect>`;
        body += `<line x1="${L + nl[1] * span}" x2="${L + nl[1] * span}" y1="${y - 2}" y2="${y + 20}" stroke="#666" stroke-dasharray="2,2"/>`;
      }
      body += `<rect x="${L}" y="${y + 4}" width="${s * span}" height="10" fill="${SAE.branchColour(index, b)}"/>`;
      body += `<text x="${L - 6}" y="${y + 13}" text-anchor="end"${b === dominant ? ' font-weight="700"' : ''}>${SAE.esc(b)}</text>`;
      const p = (pvals && pvals[b] != null ? ` p=${SAE.pval(pvals[b])}` : '') + (qvals && qvals[b] != null ? ` q=${SAE.pval(qvals[b])}` : '');
      body += `<text x="${W - R + 6}" y="${y + 13}">${SAE.fmt(s, 3)}${p}</text>`;
    });
    const axis = [0, 0.5, 1].map((t) => `<text x="${L + t * span}" y="${H - 2}" text-anchor="middle">${t}</text>`).join('');
    return `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="branch shares">${body}${axis}</svg>
      <p class="small muted">Bars: ${SAE.esc(what || 'positive-part norm share ||relu(d[b])|| / ||relu(d)||')} per branch. Grey: 5–95% of the layer's features not specialised in the branch; dashed: their median. p: this row's branch L1 mass (channel-RMS units) against the layer's typical feature; q: Benjamini–Hochberg over all features × branches.</p>`;
  };

  /* Horizontal bars for [{name, weight, href}] lists (classes, neighbours). */
  SAE.bars = function (items, label) {
    if (!items || !items.length) return '<p class="muted">None.</p>';
    const max = Math.max(...items.map((d) => Math.abs(d.weight || 0)), 1e-12);
    return '<ul class="plain">' + items.map((d) => {
      const w = Math.round(80 * Math.abs(d.weight || 0) / max);
      return `<li><span class="bar${d.weight < 0 ? ' neg' : ''}" style="width:${w}px"></span>
        <span class="small">${SAE.fmt(d.weight, 3)}</span> ${label(d)}</li>`;
    }).join('') + '</ul>';
  };

  /* Dominant-branch counts as a small bar chart. */
  SAE.countBars = function (index, counts) {
    if (!counts) return '';
    const items = Object.keys(counts).map((b) => ({ name: b, weight: counts[b] }));
    return SAE.bars(items, (d) => SAE.chip(index, d.name));
  };
})();
