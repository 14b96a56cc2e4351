(function(){
const D=JSON.parse(document.getElementById('data').textContent);
// Every status's code, name, glyph, class and rank come with the data (compat/results/status.py).
const ST=D.status,SYM=ST.glyphs,NAME=ST.names,SEV=ST.ranks,CLS=ST.classes,ABS=ST.absent,PASS=ST.passed;
const LIMIT=500;
const $=id=>document.getElementById(id);
const esc=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const nb=D.backends.length, nc=D.cols.length;
// colOf[b][col] = ledger cell index, or -1
const colOf=D.backends.map(()=>new Array(nc).fill(-1));
D.cells.forEach(([b,c],i)=>{if(b>=0&&c>=0)colOf[b][c]=i;});
const notes={};
D.notes.forEach(([t,r,m,...cs])=>{const n=notes[t]=notes[t]||{};for(const c of cs)n[c]=[r,m];});
// The codes each ledger cell holds, so the summary grid can follow the status filter.
const cellHas=D.cells.map(()=>new Set());
D.tests.forEach(([f,name,codes])=>{for(let i=0;i<D.cells.length;i++)cellHas[i].add(codes.length===1?codes:codes[i]);});
const cellIndex={};D.cells.forEach((c,i)=>{cellIndex[c[2]]=i;});
const rows=[];
D.tests.forEach(([f,name,codes,why],t)=>{
  const id=D.files[f]?D.files[f]+'::'+name:name;
  for(let b=0;b<nb;b++){
    let cs='',seen=false;
    for(let c=0;c<nc;c++){const i=colOf[b][c];const k=i<0?ABS:(codes.length===1?codes:codes[i]);cs+=k;if(k!==ABS)seen=true;}
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
fill($('f-status'),Object.keys(ST.codes));
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
  const cols=visibleCols(),want=S.status?ST.codes[S.status]:'',q=S.q.toLowerCase();
  const bi=S.backend?D.backends.indexOf(S.backend):-1;
  let list=rows.filter(r=>{
    if(S.backend&&r.b!==bi)return false;
    let any=false,green=true,has=!want;
    for(const c of cols){const k=r.cs[c];if(k!==ABS)any=true;if(k!==PASS&&k!==ABS)green=false;if(k===want)has=true;}
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
      tds+='<td class="t-'+CLS[k]+'" data-status="'+esc(NAME[k])+'" title="'+esc(title)+'">'+SYM[k]+'</td>';}
    out.push('<tr data-test="'+esc(r.id)+'" data-backend="'+esc(D.backends[r.b])+'"><td class="name">'+detail(r,cols)+'</td><td>'+esc(D.backends[r.b])+'</td>'+tds+'<td class="why">'+esc(r.why)+'</td><td class="reason">'+reasonText(r,cols)+'</td></tr>');
  }
  if(!out.length)out.push('<tr class="empty"><td colspan="'+(cols.length+4)+'">no matching tests</td></tr>');
  document.querySelector('#tests tbody').innerHTML=out.join('');
  syncGrid(want);
  $('shown').textContent='showing '+shown.length+' of '+list.length+' matching rows ('+rows.length+' in all)';
  $('shown').dataset.matching=list.length;$('shown').dataset.shown=shown.length;
  $('more-wrap').hidden=shown.length>=list.length;
}
function syncGrid(want){
  for(const td of document.querySelectorAll('#grid td[data-cell]')){
    const i=cellIndex[td.dataset.cell];
    const off=(S.backend&&td.dataset.backend!==S.backend)||(S.python&&td.dataset.python!==S.python)
      ||(want&&(i===undefined||!cellHas[i].has(want)));
    td.classList.toggle('dim',!!off);
  }
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
