"""One self-contained HTML page: the figures as inline SVG, findings in words, sortable tables, and
a tooltip that names the model under the pointer. No external resource of any kind (no CDN, no
font, no image file). Every text from the database reaches the page escaped (html.escape, or
script_json for the data of the tooltips) or through textContent, so a model named `<script>` shows as text."""

from __future__ import annotations

import html
import json
import re

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:auto;padding:1em 2em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
section.figure{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:1em;margin:1.2em 0}
section.figure svg{max-width:100%;height:auto}
.finding{font-size:1.02em;margin:.4em 0 .8em}.missing{color:#8a5a00;background:#fff7e0;padding:.6em;border-radius:4px}
table{border-collapse:collapse;font-size:12px;margin:.6em 0;background:#fff}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f0f0f0;cursor:pointer;user-select:none}
td:first-child,th:first-child{text-align:left}th.sorted-asc::after{content:' ▲'}th.sorted-desc::after{content:' ▼'}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:5px 8px;border-radius:4px;font-size:12px;
display:none;z-index:10;white-space:pre}
.meta{color:#555;font-size:12px}
"""

JS = r"""
(function(){
  const data = JSON.parse(document.getElementById('points').textContent);
  const tip = document.getElementById('tip');
  function show(ev, info){
    const lines = [info.model].concat(Object.keys(info).filter(k => k !== 'model').map(k => k + ': ' + info[k]));
    tip.textContent = lines.join('\n');
    tip.style.display = 'block';
    tip.style.left = (ev.clientX + 12) + 'px';
    tip.style.top = (ev.clientY + 12) + 'px';
  }
  for (const [gid, infos] of Object.entries(data)){
    const group = document.getElementById(gid);
    if (!group) continue;
    const marks = group.querySelectorAll('use, path');
    marks.forEach((mark, i) => {
      const info = infos[i];
      if (!info) return;
      mark.classList.add('point');
      mark.setAttribute('data-model', info.model);
      mark.addEventListener('mouseenter', ev => show(ev, info));
      mark.addEventListener('mousemove', ev => show(ev, info));
      mark.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
    });
  }
  document.querySelectorAll('table.sortable').forEach(table => {
    table.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
      const body = table.tBodies[0];
      const asc = !th.classList.contains('sorted-asc');
      table.querySelectorAll('th').forEach(h => h.classList.remove('sorted-asc', 'sorted-desc'));
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      const key = td => { const v = td.getAttribute('data-sort'); const n = parseFloat(v);
                          return v !== null && v !== '' && !isNaN(n) ? n : td.textContent; };
      const rows = Array.from(body.rows).sort((a, b) => {
        const x = key(a.cells[col]), y = key(b.cells[col]);
        const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(r => body.appendChild(r));
    }));
  });
})();
"""


# Inside <script>, "</script", "<!--" and "<script" change how the HTML parser reads the rest of the
# page; escaped as JSON \u sequences no such text is left, and JSON.parse gives the same strings back.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(data) -> str:
    """``data`` as JSON that is safe inside a <script> element in every HTML parsing state."""
    text = json.dumps(data)
    return text.translate(str.maketrans(_SCRIPT_ESCAPES))


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def table(headings: list[str], rows: list[list], table_id: str) -> str:
    """A sortable table; each cell is (shown text, sort key) or a plain value."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headings)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            shown, key = cell if isinstance(cell, tuple) else (cell, cell)
            sort = "" if key is None else (key if isinstance(key, (int, float)) else "")
            cells.append(f'<td data-sort="{esc(sort)}">{esc("-" if shown is None else shown)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _inline_svg(path) -> str:
    text = path.read_text()
    text = re.sub(r"^<\?xml[^>]*>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # matplotlib's RDF block
    return text


def page(title: str, intro: list[str], charts, sections: list[tuple[str, str]], meta: str) -> str:
    points = {}
    parts = []
    for i, chart in enumerate(charts, 1):
        parts.append(f'<section class="figure" id="fig-{esc(chart.key)}"><h2>{i}. {esc(chart.title)}</h2>')
        if chart.reason:
            parts.append(f'<p class="missing">Not drawn: {esc(chart.reason)}.</p></section>')
            continue
        if chart.finding:
            parts.append(f'<p class="finding">{esc(chart.finding)}</p>')
        parts.append(_inline_svg(chart.files["svg"]))
        parts.append(f'<p class="meta">Files: {esc(chart.files["png"].name)}, {esc(chart.files["svg"].name)}</p>'
                     "</section>")
        for j, infos in enumerate(chart.series):
            points[f"{chart.key}-pts-{j}"] = infos
    data = script_json(points)
    body = "\n".join(parts)
    extra = "\n".join(f"<h2>{esc(h)}</h2>\n{content}" for h, content in sections)
    intro_html = "".join(f"<p>{esc(p)}</p>" for p in intro)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body><main><h1>{esc(title)}</h1><p class="meta">{esc(meta)}</p>{intro_html}
{body}
{extra}
</main><div id="tip"></div>
<script type="application/json" id="points">{data}</script>
<script>{JS}</script></body></html>
"""
