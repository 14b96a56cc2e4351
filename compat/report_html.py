"""index.html: the report as one self-contained page (inline CSS and JS, no network).

The summary grid, diff and legend are plain HTML.  The per-test table is
drawn by the inline script from a compact JSON island, so 5,000 tests fit
well under 1 MB; failure messages are clipped to a shared byte budget.
Filters live in the URL fragment (``#backend=trio&python=3.14&status=failed
&green=show&q=text&sort=test``), so a link reproduces a view.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator

from .ledger import DIFF_KINDS, Diff, Ledger
from .report_view import (
    CELL_MEANING, DECIDED, TEST_MEANING,
    KnownIssues, Layout, column_label, counts_title, heading, layout,
)

PAGE_LIMIT = 1_000_000
PAGE_BUDGET = PAGE_LIMIT - 40_000

CODE = {
    "passed": "p", "failed": "f", "error": "e", "xfailed": "x", "xpassed": "X",
    "skipped": "s", "timeout": "t", "not-run": "n", "flaky": "k",
}
STRICT_XPASS = "S"

# Plain glyphs rather than emoji: the page must read the same on a machine
# without an emoji font (CI screenshots, minimal desktops); colour carries the rest.
CELL_GLYPH = {
    "ok": "✓", "failing": "✗", "timeout": "T", "leaked": "L",
    "unsupported": "U", "unavailable": "–", "error": "E",
}
GLYPH = {"p": "✓", "f": "✗", "e": "E", "x": "xf", "X": "XP", "S": "XP!", "s": "s", "t": "T", "n": "–", "k": "~", ".": "·"}


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def _code(r) -> str:
    if r.status == "xpassed" and r.strict:
        return STRICT_XPASS
    return CODE[r.status]


def _md_inline(text: str) -> str:
    """The heading's `code` spans as <code>."""
    parts = esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


# --------------------------------------------------------------------------
# static parts


def diff_html(diff: Diff | None, known: KnownIssues) -> Iterator[str]:
    if diff is None:
        return
    yield '<section id="diff"><h2>Changes since the last published report</h2>'
    if diff.problem:
        yield f"<p><em>{esc(diff.problem)}</em></p></section>"
        return
    yield f"<p>Baseline <code>{esc(diff.baseline)}</code> (run <code>{esc(str(diff.baseline_run_id))}</code>).</p>"
    if not diff.changes:
        yield "<p>No changes.</p></section>"
        return
    for kind, title in DIFF_KINDS.items():
        items = diff.of(kind)
        if not items:
            continue
        cls = "bad" if kind == "new-failure" else "good" if kind == "fixed" else "warn"
        yield f'<details open class="diff {cls}" data-kind="{kind}"><summary>{esc(title)} ({len(items)})</summary><ul>'
        for c in items[:200]:
            what = f"<code>{esc(c.nodeid)}</code> in " if c.nodeid else ""
            reason = f" — {_linked(c.reason, known)}" if c.reason else ""
            yield f"<li>{what}<code>{esc(c.cell)}</code>: {esc(c.before or 'absent')} → {esc(str(c.after))}{reason}</li>"
        if len(items) > 200:
            yield f"<li>… and {len(items) - 200} more (see compat.json)</li>"
        yield "</ul></details>"
    yield "</section>"


def _linked(text: str, known: KnownIssues) -> str:
    return known.link(text, lambda t, href: f'<a href="{esc(href)}">{esc(t)}</a>', esc)


def grid_html(lay: Layout) -> Iterator[str]:
    yield '<table id="grid"><thead><tr><th>backend</th>'
    for col in lay.columns:
        yield f"<th>{column_label(col, '<br>')}</th>"
    yield "</tr></thead><tbody>"
    for backend in lay.backends:
        yield f'<tr data-backend="{esc(backend)}"><th>{esc(backend)}</th>'
        for col in lay.columns:
            cell = lay.cell(backend, col)
            if cell is None:
                yield f"<td>{GLYPH['.']}</td>"
                continue
            yield (f'<td class="c-{cell.status}" data-cell="{esc(cell.id)}" data-status="{cell.status}" '
                   f'title="{esc(counts_title(cell))}">{CELL_GLYPH[cell.status]}</td>')
        yield "</tr>"
    yield "</tbody></table>"


def problem_cells_html(ledger: Ledger, known: KnownIssues) -> Iterator[str]:
    bad = [c for c in ledger.cells if c.status != "ok"]
    if not bad:
        return
    yield '<details id="problem-cells"><summary>Cells that are not ok (' + str(len(bad)) + ")</summary><ul>"
    for c in bad:
        yield (f'<li class="c-{c.status}">{CELL_GLYPH[c.status]} <code>{esc(c.id)}</code> <b>{c.status}</b>'
               + (f": {_linked(c.reason, known)}" if c.reason else "") + "</li>")
    yield "</ul></details>"


def legend_html() -> Iterator[str]:
    yield '<section id="legend"><h2>Legend</h2><table><tr><th>cell</th><th>meaning</th></tr>'
    for k, v in CELL_MEANING.items():
        yield f'<tr><td class="c-{k}">{CELL_GLYPH[k]} {k}</td><td>{esc(v)}</td></tr>'
    yield "</table><table><tr><th>test</th><th>meaning</th></tr>"
    for k, v in TEST_MEANING.items():
        yield f'<tr><td class="t-{CODE[k]}">{GLYPH[CODE[k]]} {k}</td><td>{esc(v)}</td></tr>'
    yield (f'<tr><td class="t-S">{GLYPH["S"]} strict xpass</td><td>xpassed under a strict marker</td></tr>'
           f"<tr><td>{GLYPH['.']}</td><td>not collected in that cell</td></tr></table>")
    yield "<h2>How each status is decided</h2><ul>"
    for line in DECIDED:
        yield f"<li>{_md_inline(line)}</li>"
    yield "</ul></section>"


# --------------------------------------------------------------------------
# the data island


def table_data(ledger: Ledger, lay: Layout, known: KnownIssues, budget: int) -> dict:
    """The per-test table as compact JSON: shared strings are indexed, uniform
    status strings collapse to one letter, cells sharing a note share one entry."""
    cell_index = {c.id: i for i, c in enumerate(ledger.cells)}
    col_index = {col: i for i, col in enumerate(lay.columns)}
    backend_index = {b: i for i, b in enumerate(lay.backends)}
    whys: dict[str, int] = {"": 0}
    texts: dict[str, int] = {"": 0}
    files: dict[str, int] = {"": 0}
    tests, notes = [], []
    for ti, t in enumerate(ledger.tests):
        codes = "".join(_code(t.results[c.id]) if c.id in t.results else "." for c in ledger.cells)
        if len(set(codes)) == 1:
            codes = codes[0]
        file, sep, name = t.nodeid.partition("::")
        if not sep:
            file, name = "", t.nodeid
        tests.append([files.setdefault(file, len(files)), name, codes, whys.setdefault(t.why, len(whys))])
        notes.extend(_test_notes(ti, t, cell_index, texts))
    data = {
        "cols": [column_label(col) for col in lay.columns],
        "colPython": [col[0] for col in lay.columns],
        "backends": list(lay.backends),
        "cells": [[backend_index.get(c.backend, -1), col_index.get((c.python, c.group, c.capture), -1), c.id]
                  for c in ledger.cells],
        "files": list(files),
        "whys": list(whys),
        "reasons": list(texts),
        "tests": tests,
        "notes": notes,
        "links": known.slugs,
        "glyph": GLYPH,
    }
    _clip_messages(data, budget)
    return data


def _test_notes(ti: int, t, cell_index: dict[str, int], texts: dict[str, int]) -> list[list]:
    """[test, reason, message, cell...] per distinct (reason, message) of a test."""
    grouped: dict[tuple[int, str], list[int]] = {}
    for cid, r in t.results.items():
        if r.status != "passed" and (r.reason or r.message):
            key = (texts.setdefault(r.reason, len(texts)), r.message)
            grouped.setdefault(key, []).append(cell_index[cid])
    return [[ti, reason, message, *cells] for (reason, message), cells in grouped.items()]


def _clip_messages(data: dict, budget: int) -> None:
    """Clip every message to the longest tail that keeps the island in budget."""
    full = [n[2] for n in data["notes"]]
    data["clipped"] = False
    if len(_island(data).encode()) <= budget:
        return
    for n in data["notes"]:
        n[2] = ""
    room = budget - len(_island(data).encode()) - 60 * len(full)

    def cost(limit: int) -> int:
        return sum(len(json.dumps(m[-limit:] if len(m) > limit else m, ensure_ascii=False).encode())
                   for m in full)

    lo, hi = 0, max((len(m) for m in full), default=0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= room else (lo, mid - 1)
    for n, m in zip(data["notes"], full, strict=True):
        n[2] = m if len(m) <= lo else ("… (clipped; full text in compat.json)\n" + m[-lo:] if lo else "")
    data["clipped"] = True


def _island(data: dict) -> str:
    # "</" must not appear inside a <script> element.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


# --------------------------------------------------------------------------
# the page


def render_html(ledger: Ledger, known: KnownIssues) -> str:
    lay = layout(ledger)
    static = "".join([
        f"<h1>Compatibility</h1><p id='heading'>{_md_inline(heading(ledger))}</p>",
        *diff_html(ledger.diff, known),
        "<h2>Summary</h2>", *grid_html(lay), *problem_cells_html(ledger, known),
    ])
    legend = "".join(legend_html())
    budget = PAGE_BUDGET - len(static.encode()) - len(legend.encode()) - len(_CSS) - len(_JS) - len(_CONTROLS)
    data = _island(table_data(ledger, lay, known, budget))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Compatibility — {esc(ledger.run_id)}</title><style>{_CSS}</style></head><body>"
        f"{static}{_CONTROLS}<script id='data' type='application/json'>{data}</script>"
        f"{legend}<script>{_JS}</script></body></html>"
    )


_CONTROLS = """
<h2>Tests</h2>
<form id="filters" onsubmit="return false">
<label>backend <select id="f-backend"><option value="">all</option></select></label>
<label>python <select id="f-python"><option value="">all</option></select></label>
<label>status <select id="f-status"><option value="">any</option></select></label>
<label><input type="checkbox" id="f-green" checked> hide all-green rows</label>
<label>test <input type="search" id="f-q" placeholder="substring of the node id"></label>
<span id="shown"></span>
</form>
<table id="tests"><thead></thead><tbody></tbody></table>
<p id="more-wrap" hidden><button id="more" type="button">show all rows</button></p>
"""

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}
code{font:12px ui-monospace,monospace;background:#f3f4f6;padding:0 .2em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #d0d7de;padding:2px 6px;text-align:center;vertical-align:top}
#grid td{font-size:18px;min-width:2.2em}
#tests td.name{text-align:left;font:12px ui-monospace,monospace;min-width:24em;max-width:48em;overflow-wrap:anywhere}
#tests td{font-weight:bold;font-size:12px}#tests td.t-a{color:#8c959f}
#tests td.why,#tests td.reason{text-align:left;max-width:22em;font-size:12px}
#tests th{cursor:pointer;user-select:none;font-size:12px;position:sticky;top:0;background:#f6f8fa}
#tests th.sorted::after{content:" ▾"}#tests th.sorted.rev::after{content:" ▴"}
.c-ok,.t-p{background:#dafbe1}.c-failing,.t-f,.t-S{background:#ffd8d3}.c-error,.t-e{background:#ffc1ba}
.c-timeout,.t-t{background:#f4c7ff}.c-leaked{background:#d0ecff}.c-unsupported,.c-unavailable,.t-n{background:#eaeef2}
.t-x{background:#fff1c2}.t-X{background:#fde68a}.t-s{background:#f0f0f0}.t-k{background:#ffe3bd}
details.diff.bad summary{color:#b42318;font-weight:bold}details.diff.good summary{color:#1a7f37}
pre{white-space:pre-wrap;max-height:24em;overflow:auto;background:#f6f8fa;padding:.4em;text-align:left;font-size:11px}
#legend td{text-align:left}form label{margin-right:1em}#shown{color:#57606a}
"""

_JS = r"""
(function(){
const D=JSON.parse(document.getElementById('data').textContent);
const SYM=D.glyph;
const NAME={p:'passed',f:'failed',e:'error',x:'xfailed',X:'xpassed',S:'xpassed (strict)',s:'skipped',t:'timeout',n:'not-run',k:'flaky','.':'not collected'};
const SEV={'.':0,p:1,s:2,x:3,X:4,k:5,n:6,S:7,f:8,e:9,t:10};
const LIMIT=500;
const $=id=>document.getElementById(id);
const esc=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const nb=D.backends.length, nc=D.cols.length;
// colOf[b][col] = ledger cell index, or -1
const colOf=D.backends.map(()=>new Array(nc).fill(-1));
D.cells.forEach(([b,c],i)=>{if(b>=0&&c>=0)colOf[b][c]=i;});
const notes={};
D.notes.forEach(([t,r,m,...cs])=>{const n=notes[t]=notes[t]||{};for(const c of cs)n[c]=[r,m];});
const rows=[];
D.tests.forEach(([f,name,codes,why],t)=>{
  const id=D.files[f]?D.files[f]+'::'+name:name;
  for(let b=0;b<nb;b++){
    let cs='',seen=false;
    for(let c=0;c<nc;c++){const i=colOf[b][c];const k=i<0?'.':(codes.length===1?codes:codes[i]);cs+=k;if(k!=='.')seen=true;}
    if(seen)rows.push({t,id,b,cs,why:D.whys[why]});
  }
});
function state(){
  const h=new URLSearchParams(location.hash.slice(1));
  return {backend:h.get('backend')||'',python:h.get('python')||'',status:h.get('status')||'',
          green:h.get('green')||'hide',q:h.get('q')||'',sort:h.get('sort')||'test',rev:h.get('rev')==='1',all:h.get('all')==='1'};
}
let S=state();
function setHash(){
  const h=new URLSearchParams();
  if(S.backend)h.set('backend',S.backend);if(S.python)h.set('python',S.python);
  if(S.status)h.set('status',S.status);if(S.green!=='hide')h.set('green',S.green);
  if(S.q)h.set('q',S.q);if(S.sort!=='test')h.set('sort',S.sort);if(S.rev)h.set('rev','1');if(S.all)h.set('all','1');
  history.replaceState(null,'','#'+h.toString());
}
function fill(sel,values){for(const v of values){const o=document.createElement('option');o.value=v;o.textContent=v;sel.appendChild(o);}}
fill($('f-backend'),D.backends);
fill($('f-python'),[...new Set(D.colPython)]);
fill($('f-status'),Object.keys(CODE_OF()));
function CODE_OF(){return {passed:'p',failed:'f',error:'e',xfailed:'x',xpassed:'X','xpassed-strict':'S',skipped:'s',timeout:'t','not-run':'n',flaky:'k'};}
function syncControls(){
  $('f-backend').value=S.backend;$('f-python').value=S.python;$('f-status').value=S.status;
  $('f-green').checked=S.green==='hide';$('f-q').value=S.q;
}
function visibleCols(){const v=[];for(let c=0;c<nc;c++)if(!S.python||D.colPython[c]===S.python)v.push(c);return v;}
function detail(r,cols){
  const n=notes[r.t];if(!n)return esc(r.id);
  let body='';
  for(const c of cols){const i=colOf[r.b][c];if(i>=0&&n[i]){const [ri,m]=n[i];
    body+='<div><b>'+esc(D.cells[i][2])+'</b> '+esc(NAME[r.cs[c]])+(D.reasons[ri]?': '+esc(D.reasons[ri]):'')+(m?'<pre>'+esc(m)+'</pre>':'')+'</div>';}}
  return body?'<details><summary>'+esc(r.id)+'</summary>'+body+'</details>':esc(r.id);
}
function reasonText(r,cols){
  const n=notes[r.t];if(!n)return '';const seen=new Set();
  for(const c of cols){const i=colOf[r.b][c];if(i>=0&&n[i]&&D.reasons[n[i][0]])seen.add(D.reasons[n[i][0]]);}
  return [...seen].slice(0,3).map(linkify).join('; ');
}
function linkify(text){
  let out=esc(text);
  for(const [slug,href] of Object.entries(D.links))out=out.split(esc(slug)).join('<a href="'+esc(href)+'">'+esc(slug)+'</a>');
  return out;
}
function render(){
  syncControls();
  const cols=visibleCols(),want=S.status?CODE_OF()[S.status]:'',q=S.q.toLowerCase();
  const bi=S.backend?D.backends.indexOf(S.backend):-1;
  let list=rows.filter(r=>{
    if(S.backend&&r.b!==bi)return false;
    let any=false,green=true,has=!want;
    for(const c of cols){const k=r.cs[c];if(k!=='.')any=true;if(k!=='p'&&k!=='.')green=false;if(k===want)has=true;}
    if(!any||!has)return false;
    if(S.green==='hide'&&green)return false;
    return !q||r.id.toLowerCase().includes(q);
  });
  const key=S.sort;
  const cmp=key==='test'?(a,b)=>a.id<b.id?-1:a.id>b.id?1:a.b-b.b
    :key==='backend'?(a,b)=>a.b-b.b||(a.id<b.id?-1:1)
    :key==='why'?(a,b)=>(a.why<b.why?1:a.why>b.why?-1:0)||(a.id<b.id?-1:1)
    :(a,b)=>{const c=+key;return SEV[b.cs[c]]-SEV[a.cs[c]]||(a.id<b.id?-1:1);};
  list.sort(cmp);if(S.rev)list.reverse();
  const head=['<tr><th data-sort="test">test</th><th data-sort="backend">backend</th>'];
  for(const c of cols)head.push('<th data-sort="'+c+'">'+esc(D.cols[c]).split(' ').join('<br>')+'</th>');
  head.push('<th data-sort="why">why</th><th>reason</th></tr>');
  const thead=document.querySelector('#tests thead');thead.innerHTML=head.join('');
  for(const th of thead.querySelectorAll('th[data-sort]'))if(th.dataset.sort===key)th.className='sorted'+(S.rev?' rev':'');
  const shown=S.all?list:list.slice(0,LIMIT);
  const out=[];
  for(const r of shown){
    let tds='';
    for(const c of cols){const k=r.cs[c];const i=colOf[r.b][c];
      const n=i>=0&&notes[r.t]&&notes[r.t][i];const title=NAME[k]+(n&&D.reasons[n[0]]?': '+D.reasons[n[0]]:'');
      tds+='<td class="t-'+(k==='.'?'a':k)+'" data-status="'+k+'" title="'+esc(title)+'">'+SYM[k]+'</td>';}
    out.push('<tr data-test="'+esc(r.id)+'" data-backend="'+esc(D.backends[r.b])+'"><td class="name">'+detail(r,cols)+'</td><td>'+esc(D.backends[r.b])+'</td>'+tds+'<td class="why">'+esc(r.why)+'</td><td class="reason">'+reasonText(r,cols)+'</td></tr>');
  }
  document.querySelector('#tests tbody').innerHTML=out.join('');
  $('shown').textContent='showing '+shown.length+' of '+list.length+' matching rows ('+rows.length+' in all)';
  $('shown').dataset.matching=list.length;$('shown').dataset.shown=shown.length;
  $('more-wrap').hidden=shown.length>=list.length;
}
function on(id,ev,f){$(id).addEventListener(ev,()=>{f();setHash();render();});}
on('f-backend','change',()=>S.backend=$('f-backend').value);
on('f-python','change',()=>S.python=$('f-python').value);
on('f-status','change',()=>S.status=$('f-status').value);
on('f-green','change',()=>S.green=$('f-green').checked?'hide':'show');
on('f-q','input',()=>S.q=$('f-q').value);
on('more','click',()=>S.all=true);
document.querySelector('#tests thead').addEventListener('click',e=>{
  const th=e.target.closest('th[data-sort]');if(!th)return;
  if(S.sort===th.dataset.sort)S.rev=!S.rev;else{S.sort=th.dataset.sort;S.rev=false;}
  setHash();render();
});
window.addEventListener('hashchange',()=>{S=state();render();});
render();
document.body.dataset.ready='1';
})();
"""
