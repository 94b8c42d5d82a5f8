// The Writer Images page: the seed's /writer/images page, with the seed's "future enhancements" built:
// server-side search/filter/sort/pagination, live progress over SSE and a grid that follows changes made
// elsewhere (WordPress included) without a reload, publishing results pushed over a WebSocket (toasts, and
// desktop notifications when the tab is in the background), batch publishing with per-item
// results (or all or nothing), scheduled publishing with a queue and a calendar, image type/status and
// sync status filters. Plain ES modules, no build step.

const PAGE_SIZE = 10;
const $ = (sel) => document.querySelector(sel);
const state = {
  access: null, refresh: localStorage.getItem("wi.refresh"), role: null,
  page: 1, cursorStack: [], count: 0, rows: [], selected: new Set(), settings: null,
  siteId: localStorage.getItem("wi.site") || "", sectorId: localStorage.getItem("wi.sector") || "",
};

// --- API client: the unified envelope, JWT with rotating refresh on 401 ------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `Request failed (${status})`);
    this.status = status; this.errors = body?.errors || null; this.requestId = body?.request_id;
  }
}

async function fetchAPI(path, { method = "GET", body, retry = true, signal } = {}) {
  const headers = { "Content-Type": "application/json" };
  const sentWith = state.access;
  if (sentWith) headers.Authorization = `Bearer ${sentWith}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { error: "Network error: Unable to reach API" });
  }
  if (response.status === 401 && retry) {
    // another request may have refreshed the tokens meanwhile: use them rather than rotate again.
    // A refresh that fails for a while (5xx, network) throws with the tokens kept: the next action retries.
    if (state.refresh && ((state.access && state.access !== sentWith) || (await refreshTokens()))) {
      return fetchAPI(path, { method, body, retry: false, signal });
    }
    showLogin("Session expired");
    throw new ApiError(401, { error: "Session expired" });
  }
  if (response.status === 304) return null;
  const payload = await response.json().catch(() => ({}));
  if (!response.ok || payload.success === false) throw new ApiError(response.status, payload);
  return payload.data;
}

// One refresh at a time: the refresh token rotates, and presenting a rotated one again (as a second,
// concurrent refresh would) revokes the whole session. Requests that find the access token expired
// together share the one refresh; tabs take turns (a lock where the browser has them) and each starts from
// the token the last refresh stored, so that a tab whose token another tab rotated does not present it again.
let refreshing = null;
const oneTabAtATime = (work) => (navigator.locks ? navigator.locks.request("wi.refresh", work) : work());
function refreshTokens() {
  refreshing ??= oneTabAtATime(async () => {
    state.refresh = localStorage.getItem("wi.refresh") || state.refresh;
    let response;
    try {
      response = await fetch("/v1/auth/refresh", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: state.refresh }),
      });
    } catch {
      throw new ApiError(0, { error: "Network error: Unable to reach API" });
    }
    // Only a refusal ends the session; any other failure is transient and keeps the tokens (it throws).
    if (response.status === 401 || response.status === 403) { setTokens(null); return false; }
    const payload = await response.json().catch(() => ({}));
    if (!response.ok || payload.success === false) throw new ApiError(response.status, payload);
    setTokens(payload.data);
    return true;
  }).finally(() => { refreshing = null; });
  return refreshing;
}

function setTokens(tokens) {
  state.access = tokens?.access_token || null;
  state.refresh = tokens?.refresh_token || null;
  state.role = tokens?.role || state.role;
  if (state.refresh) localStorage.setItem("wi.refresh", state.refresh); else localStorage.removeItem("wi.refresh");
}

// Server-sent events over fetch (EventSource cannot send an Authorization header).
async function* sse(path, signal) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${state.access}` }, signal });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let split;
    while ((split = buffer.indexOf("\n\n")) >= 0 || (split = buffer.indexOf("\r\n\r\n")) >= 0) {
      const chunk = buffer.slice(0, split); buffer = buffer.slice(split + (buffer[split] === "\r" ? 4 : 2));
      let event = "message", data = "";
      for (const line of chunk.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

// --- small helpers ------------------------------------------------------------------------------

function toast(message, kind = "info") {
  const el = document.createElement("div");
  el.className = `toast ${kind}`; el.textContent = message;
  $("#toasts").append(el); setTimeout(() => el.remove(), 5000);
}
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const badge = (value) => value ? `<span class="badge ${esc(value)}">${esc(value)}</span>` : `<span class="muted">—</span>`;
const canWrite = () => state.role !== "viewer";
const webUrl = (url) => (/^https?:\/\//i.test(url ?? "") ? url : null);  // never a javascript: (or other) link

// The seed's rule for the "Publish to WordPress" button (the server enforces it too).
export const isPublishable = (row) => row.status === "published" && (!row.external_id || !row.external_url)
  && (!row.sync_status || row.sync_status !== "published");

function thumb(image, contentId) {
  if (!image) return `<span class="thumb">none</span>`;
  if (image.image_url && image.status === "generated") {
    return `<img class="thumb" tabindex="0" role="button" loading="lazy" src="${esc(image.image_url)}" alt="${esc(image.prompt)}" data-preview="${esc(image.image_url)}">`;
  }
  return `<span class="thumb" title="${esc(image.prompt)}">${esc(image.status)}</span>`;
}

// --- loading the grouped view (server-side search, filters, sort, pagination) -------------------

let loadController = null;
async function loadImages() {
  loadController?.abort(); loadController = new AbortController();
  const params = new URLSearchParams({ page: String(state.page), page_size: String(PAGE_SIZE), ordering: $("#ordering").value });
  const filters = { search: $("#search").value.trim(), overall_status: $("#filter-overall").value, sync_status: $("#filter-sync").value,
    image_type: $("#filter-image-type").value, image_status: $("#filter-image-status").value, site_id: state.siteId, sector_id: state.sectorId };
  for (const [k, v] of Object.entries(filters)) if (v) params.append(k, v);
  try {
    const data = await fetchAPI(`/v1/writer/images/content_images/?${params}`, { signal: loadController.signal });
    const last = Math.max(1, Math.ceil(data.count / PAGE_SIZE));
    if (state.page > last) { state.page = last; return loadImages(); }  // a double click on Next, fewer rows
    state.rows = data.results; state.count = data.count;
    renderRows(); renderMetrics();
  } catch (err) {
    if (err.name !== "AbortError") toast(`Failed to load images: ${err.message}`, "error");
  }
}

const rowMarkup = new WeakMap();  // the markup each rendered row was made from

function renderRows() {
  const max = state.settings?.max_in_article_images ?? 5;
  const markup = state.rows.map((row) => {
    const inArticle = row.in_article_images.slice(0, Math.max(max, row.in_article_images.length))
      .map((img) => thumb(img, row.content_id)).join("");
    const publish = canWrite() && isPublishable(row)
      ? `<button class="success" data-action="publish" data-id="${row.content_id}"${publishing.has(row.content_id) ? " disabled" : ""}>Publish to WordPress</button>` : "";
    const link = webUrl(row.external_url) ? `<a href="${esc(row.external_url)}" target="_blank" rel="noopener">#${esc(row.external_id)}</a>` : "";
    return `<tr data-id="${row.content_id}">
      <td><input type="checkbox" data-select="${row.content_id}" ${state.selected.has(row.content_id) ? "checked" : ""} aria-label="Select ${esc(row.content_title)}"></td>
      <td><strong>${esc(row.content_title)}</strong></td>
      <td>${thumb(row.featured_image, row.content_id)}</td>
      <td><div class="thumbs">${inArticle}</div></td>
      <td>${badge(row.overall_status)}</td>
      <td>${badge(row.status)}</td>
      <td>${badge(row.sync_status)} ${link}</td>
      <td><div class="actions">
        ${canWrite() ? `<button data-action="generate" data-id="${row.content_id}">Generate Images</button>` : ""}
        ${publish}
        ${canWrite() ? `<button class="ghost" data-action="status" data-id="${row.content_id}">Update Status</button>` : ""}
      </div></td></tr>`;
  });
  // Only the rows whose markup changed are replaced: a reload (the grid follows every change of the
  // account) must not take away the button being clicked or the control that has the keyboard focus.
  const tbody = $("#rows");
  markup.forEach((html, i) => {
    const current = tbody.rows[i];
    if (current && rowMarkup.get(current) === html) return;
    const template = document.createElement("template");
    template.innerHTML = html;
    const tr = template.content.firstElementChild;
    rowMarkup.set(tr, html);
    if (current) current.replaceWith(tr); else tbody.append(tr);
  });
  while (tbody.rows.length > markup.length) tbody.rows[tbody.rows.length - 1].remove();
  $("#empty").hidden = state.rows.length > 0;
  const pages = Math.max(1, Math.ceil(state.count / PAGE_SIZE));
  $("#page-info").textContent = `Page ${state.page} of ${pages} · ${state.count} items`;
  $("#prev").disabled = state.page <= 1; $("#next").disabled = state.page >= pages;
  updateBulk();
}

function renderMetrics() {
  const counts = { complete: 0, partial: 0, pending: 0, failed: 0 };
  for (const row of state.rows) counts[row.overall_status] += 1;
  const ready = state.rows.filter(isPublishable).length;
  $("#metrics").innerHTML = [["Total content", state.count], ["Complete (page)", counts.complete],
    ["Partial (page)", counts.partial], ["Failed (page)", counts.failed], ["Ready to publish (page)", ready]]
    .map(([label, value]) => `<div class="metric"><span class="muted">${label}</span><b>${value}</b></div>`).join("");
}

function updateBulk() {
  const ready = state.rows.filter((r) => state.selected.has(r.content_id) && isPublishable(r));
  $("#bulk-publish").disabled = !canWrite() || ready.length === 0 || bulkPublishing;
  $("#select-all").checked = state.rows.length > 0 && state.rows.every((r) => state.selected.has(r.content_id));
  $("#bulk-publish").textContent = ready.length ? `Publish Ready to WordPress (${ready.length})` : "Publish Ready to WordPress";
}

// --- actions ------------------------------------------------------------------------------------

const publishing = new Set();  // content ids whose Publish to WordPress is in flight
// Publications this page requested and no one has told the result of yet: the feed tells theirs (a
// teammate's show in the queue; a Publish to WordPress answered at once told its own).
const awaitingResult = new Set();
let bulkPublishing = false;

async function publishOne(contentId) {
  if (publishing.has(contentId)) return;
  publishing.add(contentId); renderRows();
  try {
    const result = await fetchAPI("/v1/publisher/publish/?wait=true", { method: "POST", body: { content_id: contentId, destinations: ["wordpress"] } });
    if (result.external_url) toast("Published to WordPress", "success");
    else { awaitingResult.add(result.publication_id); toast("Publishing queued; you will be told when WordPress answers", "info"); }
  } catch (err) { toast(`Publishing failed: ${err.message}`, "error"); }
  finally { publishing.delete(contentId); }
  loadImages();
}

async function publishBulk() {
  const ids = state.rows.filter((r) => state.selected.has(r.content_id) && isPublishable(r)).map((r) => r.content_id);
  if (!ids.length || bulkPublishing) return;
  bulkPublishing = true; updateBulk();
  const body = { content_ids: ids, destinations: ["wordpress"], atomic: $("#bulk-atomic").checked };
  const when = $("#bulk-schedule").value;
  if (when) body.publish_at = new Date(when).toISOString();  // the browser's local time, sent with its zone
  let accepted = 0;
  try {
    const result = await fetchAPI("/v1/publisher/publish/batch/", { method: "POST", body });
    accepted = result.accepted;
    for (const item of result.results) if (item.accepted) awaitingResult.add(item.publication_id);
    if (result.accepted) toast(`${when ? "Scheduling" : "Publishing"} ${result.accepted} item(s)`, "success");
    for (const item of result.results.filter((r) => !r.accepted)) toast(`#${item.content_id}: ${item.reason}`, "warning");
  } catch (err) {
    toast(`Bulk publish failed: ${err.message}`, "error");
    for (const [id, reasons] of Object.entries(err.errors || {})) toast(`#${id}: ${reasons.join(", ")}`, "warning");
  } finally { bulkPublishing = false; }
  if (accepted) state.selected.clear();  // nothing published (all or nothing refused): the selection stays
  loadImages();
  setTimeout(loadImages, 3000);
}

// --- publishing queue and calendar --------------------------------------------------------------

const calendar = { month: new Date(new Date().getFullYear(), new Date().getMonth(), 1) };
const localTime = (iso) => esc(new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));

async function loadPublishing() {
  try { await Promise.all([loadPublicationQueue(), loadCalendar()]); }
  catch (err) { toast(`Failed to load publishing: ${err.message}`, "error"); }
}

const queued = new Map();  // the queue's rows by publication id
const retrying = new Set();  // publication ids whose Retry is in flight

// A failed publication is requested again as it was: the same action, and its schedule if still ahead.
async function retryPublication(publicationId) {
  const failed = queued.get(publicationId);
  if (!failed || retrying.has(publicationId)) return;
  retrying.add(publicationId);
  $(`#queue-rows [data-retry="${publicationId}"]`)?.setAttribute("disabled", "");
  const republish = failed.action === "republish";  // an update of the live post: no schedule of its own
  const body = republish ? { content_id: failed.content_id } : { content_id: failed.content_id, destinations: ["wordpress"] };
  if (!republish && failed.publish_at && new Date(failed.publish_at) > new Date()) body.publish_at = failed.publish_at;
  try {
    const requested = await fetchAPI(`/v1/publisher/${republish ? "republish" : "publish"}/`, { method: "POST", body });
    awaitingResult.add(requested.publication_id);
    toast(`Retrying “${failed.title}”`, "success");
  } catch (err) { toast(`Retry of “${failed.title}” refused: ${err.message}`, "error"); }
  finally { retrying.delete(publicationId); }
  loadPublishing();
}

async function loadPublicationQueue() {
  const params = new URLSearchParams({ page_size: "50" });
  if ($("#queue-status").value) params.append("status", $("#queue-status").value);
  const data = await fetchAPI(`/v1/publisher/publications/?${params}`);
  queued.clear();
  for (const p of data.results) queued.set(p.publication_id, p);
  $("#queue-rows").innerHTML = data.results.map((p) => `<tr data-publication="${p.publication_id}">
    <td>${esc(p.title)}</td>
    <td>${badge(p.status)} ${p.reason ? `<span class="muted">${esc(p.reason)}</span>` : ""}
      ${p.status === "failed" && p.latest && canWrite() ? `<button class="ghost small" data-retry="${p.publication_id}"${retrying.has(p.publication_id) ? " disabled" : ""}>Retry</button>` : ""}</td>
    <td>${p.publish_at ? localTime(p.publish_at) : `<span class="muted">at once</span>`}</td>
    <td>${localTime(p.requested_at)}</td>
    <td>${badge(p.sync_status)} ${webUrl(p.external_url) ? `<a href="${esc(p.external_url)}" target="_blank" rel="noopener">open</a>` : ""}</td>
  </tr>`).join("") || `<tr><td colspan="5" class="muted">Nothing here.</td></tr>`;
}

async function loadCalendar() {
  const first = calendar.month;
  const next = new Date(first.getFullYear(), first.getMonth() + 1, 1);
  const params = new URLSearchParams({ scheduled_from: first.toISOString(), scheduled_to: next.toISOString(), page_size: "100" });
  const data = await fetchAPI(`/v1/publisher/publications/?${params}`);
  const byDay = new Map();
  for (const p of data.results) {
    const day = new Date(p.publish_at).getDate();
    byDay.set(day, [...(byDay.get(day) || []), p]);
  }
  $("#calendar-month").textContent = first.toLocaleDateString(undefined, { month: "long", year: "numeric" });
  const today = new Date();
  const isToday = (day) => today.getFullYear() === first.getFullYear() && today.getMonth() === first.getMonth() && today.getDate() === day;
  const days = new Date(next.getTime() - 1).getDate();
  const lead = (first.getDay() + 6) % 7;  // weeks start on Monday
  const cells = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].map((d) => `<div class="weekday">${d}</div>`);
  for (let i = 0; i < lead; i += 1) cells.push("<div></div>");
  for (let day = 1; day <= days; day += 1) {
    const posts = (byDay.get(day) || []).map((p) => `<span class="post" title="${esc(p.title)} · ${esc(p.status)}">${badge(p.status)} ${esc(p.title)}</span>`);
    cells.push(`<div class="day${isToday(day) ? " today" : ""}" data-day="${day}"><b>${day}</b>${posts.join("")}</div>`);
  }
  $("#calendar").innerHTML = cells.join("");
}

function moveCalendar(months) {
  calendar.month = new Date(calendar.month.getFullYear(), calendar.month.getMonth() + months, 1);
  loadCalendar().catch((err) => toast(`Failed to load the calendar: ${err.message}`, "error"));
}

async function openQueue(contentId) {
  const row = state.rows.find((r) => r.content_id === contentId);
  const images = [row.featured_image, ...row.in_article_images].filter(Boolean);
  const queue = images.filter((i) => i.status !== "queued" && i.status !== "generating");
  const modal = $("#queue-modal");
  $("#queue-meta").textContent = `${row.content_title} · ${state.settings?.provider ?? "?"} / ${state.settings?.model ?? "?"}`;
  $("#queue-list").innerHTML = queue.map((i) => `<li data-image="${i.id}" class="${esc(i.status)}">
      <span>${i.image_type === "featured" ? "Featured" : `In-article ${i.position}`}</span>
      <div class="bar"><span style="width:${i.status === "generated" ? 100 : 0}%"></span></div>
      <span class="label">${esc(i.status)}</span></li>`).join("") || "<li>Every image is already being generated.</li>";
  $("#queue-start").disabled = queue.length === 0;
  $("#queue-start").onclick = () => startGeneration(contentId, queue.map((i) => i.id));
  modal.showModal();
}

function showItem(item) {
  const li = document.querySelector(`#queue-list li[data-image="${item.image_id}"]`);
  if (!li) return;
  li.className = item.state;
  li.querySelector(".bar > span").style.width = `${item.state === "generated" || item.state === "failed" ? 100 : item.percent}%`;
  li.querySelector(".label").textContent = item.error ? `failed: ${item.error}` : (item.stage || item.state);
}

async function startGeneration(contentId, ids) {
  $("#queue-start").disabled = true;
  let task;
  try {
    task = await fetchAPI("/v1/writer/images/generate_images/", { method: "POST", body: { ids, content_id: contentId } });
  } catch (err) { toast(`Could not start generation: ${err.message}`, "error"); $("#queue-start").disabled = false; return; }
  const controller = new AbortController();
  $("#queue-modal").addEventListener("close", () => controller.abort(), { once: true });
  try {
    for await (const { event, data } of sse(`/v1/tasks/${task.task_id}/events`, controller.signal)) {
      if (event === "snapshot" || event === "task_done") data.items.forEach(showItem);
      else showItem(data);
      if (event === "task_done") {
        toast(`Generated ${data.generated} image(s)${data.failed ? `, ${data.failed} failed` : ""}`, data.failed ? "warning" : "success");
        break;
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") { toast(`Live progress lost (${err.message}); polling`, "warning"); await pollTask(task.task_id, controller.signal); }
  }
  loadImages();
}

// Polling goes on through failures (each run of them shown once) until the task ends or the modal closes.
async function pollTask(taskId, signal) {
  let failing = false;
  for (let i = 0; i < 300 && !signal.aborted; i += 1) {
    try {
      const task = await fetchAPI(`/v1/tasks/${taskId}/`, { signal });
      failing = false;
      task.items.forEach(showItem);
      if (task.state !== "running") return;
    } catch (err) {
      if (err.name === "AbortError") return;
      if (!failing) toast(`Could not get the generation progress (${err.message}); retrying`, "error");
      failing = true;
    }
    await new Promise((r) => setTimeout(r, failing ? 3000 : 1000));
  }
  if (!signal.aborted) toast("Generation is taking long: close this dialog and check the grid later", "warning");
}

let statusContentId = null;
function openStatus(contentId) {
  statusContentId = contentId;
  $("#status-record").textContent = state.rows.find((r) => r.content_id === contentId)?.content_title ?? "";
  $("#status-modal").showModal();
}

let updatingStatus = false;  // a double click sends one update
async function updateStatus(status) {
  if (updatingStatus) return;
  updatingStatus = true;
  const buttons = document.querySelectorAll("#status-modal [data-status]");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const result = await fetchAPI("/v1/writer/images/bulk_update/", { method: "POST", body: { content_id: statusContentId, status } });
    toast(`Successfully updated ${result.updated_count} image(s) status to ${status}`, "success");
    $("#status-modal").close(); loadImages();
  } catch (err) { toast(`Failed to update status: ${err.message}`, "error"); }
  finally { updatingStatus = false; buttons.forEach((b) => { b.disabled = false; }); }
}

// --- panels: AI function logs and settings ------------------------------------------------------

async function loadLogs() {
  const data = await fetchAPI("/v1/writer/images/ai_logs/?page_size=50");
  $("#logs-rows").innerHTML = data.results.map((l) => `<tr>
    <td>${esc(new Date(l.called_at).toLocaleString())}</td><td>${esc(l.provider)} / ${esc(l.model)}</td>
    <td>${esc(l.prompt.slice(0, 80))}</td><td>${l.latency_ms} ms</td><td>$${Number(l.estimated_cost_usd).toFixed(3)}</td>
    <td>${l.success ? badge("generated") : `<span class="badge failed">${esc(l.error || "failed")}</span>`}</td></tr>`).join("");
}

const MODELS = { local: ["local-v1"], openai: ["dall-e-3", "dall-e-2", "gpt-image-1"] };
function fillModels(provider, selected) {
  $("#settings-form").model.innerHTML = MODELS[provider].map((m) => `<option ${m === selected ? "selected" : ""}>${m}</option>`).join("");
}

async function loadSettings() {
  state.settings = (await fetchAPI("/v1/system/integrations/image_generation/")).config;
  const form = $("#settings-form");
  for (const [k, v] of Object.entries(state.settings)) {
    if (!form[k]) continue;
    if (form[k].type === "checkbox") form[k].checked = v; else form[k].value = v;
  }
  fillModels(state.settings.provider, state.settings.model);
}

async function saveSettings(event) {
  event.preventDefault();
  const form = event.target;
  const body = { provider: form.provider.value, model: form.model.value, image_type: form.image_type.value,
    max_in_article_images: Number(form.max_in_article_images.value), image_format: form.image_format.value,
    desktop_enabled: form.desktop_enabled.checked, mobile_enabled: form.mobile_enabled.checked };
  try {
    state.settings = (await fetchAPI("/v1/system/integrations/image_generation/", { method: "PUT", body })).config;
    $("#settings-error").textContent = ""; toast("Settings saved", "success"); renderRows();
  } catch (err) {
    $("#settings-error").textContent = err.errors ? Object.entries(err.errors).map(([k, v]) => `${k}: ${v.join(", ")}`).join("; ") : err.message;
  }
}

// --- sites and sectors (the seed's siteChanged / sectorChanged) ----------------------------------

async function loadSites() {
  const sites = await fetchAPI("/v1/sites/");
  $("#site-select").innerHTML = `<option value="">All sites</option>` + sites.map((s) => `<option value="${s.id}">${esc(s.name)}</option>`).join("");
  $("#site-select").value = sites.some((s) => String(s.id) === state.siteId) ? state.siteId : "";
  state.siteId = $("#site-select").value;
  await loadSectors();
}

async function loadSectors() {
  const select = $("#sector-select");
  if (!state.siteId) { select.innerHTML = `<option value="">All sectors</option>`; state.sectorId = ""; return; }
  const sectors = await fetchAPI(`/v1/sites/${state.siteId}/sectors/`);
  select.innerHTML = `<option value="">All sectors</option>` + sectors.map((s) => `<option value="${s.id}">${esc(s.name)}</option>`).join("");
  select.value = sectors.some((s) => String(s.id) === state.sectorId) ? state.sectorId : "";
  state.sectorId = select.value;
}

// --- live updates: the grouped view reloads itself when the account's data changes ----------------

let changesController = null;
async function watchChanges() {
  changesController?.abort();
  const controller = new AbortController();
  changesController = controller;
  let connections = 0;
  while (!controller.signal.aborted) {
    try {
      for await (const { event } of sse("/v1/writer/images/changes", controller.signal)) {
        if (event === "ready") {
          $("#live").hidden = false;
          connections += 1;
          if (connections === 1) continue;  // a reconnect may have missed changes: reload as on `changed`
        }
        loadImages();
        if (!$("#publishing-panel").hidden) loadPublishing();
      }
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err.status === 401) {
        // refused: the session is over; failing for a while: try again on the next reconnect
        const renewed = await refreshTokens().catch(() => true);
        if (!renewed) { showLogin("Session expired"); return; }
      }
    }
    $("#live").hidden = true;
    await new Promise((r) => setTimeout(r, 3000));  // the stream ended or failed: reconnect
  }
}

function stopWatchingChanges() { changesController?.abort(); changesController = null; $("#live").hidden = true; }

// --- publishing results, pushed: a WebSocket that reports each publication as it is requested and ends ---

let publicationFeed = null;
function watchPublications() {
  stopWatchingPublications();
  const feed = { socket: null, stopped: false, connections: 0, failures: 0 };
  publicationFeed = feed;
  const connect = () => {
    if (feed.stopped || !state.access) return;
    const token = state.access;
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/publisher/publications/live`);
    feed.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ access_token: token }));  // no token in the URL (logs)
    socket.onmessage = (message) => {
      const { type, data } = JSON.parse(message.data);
      if (type === "ready") feed.failures = 0;
      if (type === "publication") publicationChanged(data);
      else if (type === "resync" || (type === "ready" && ++feed.connections > 1)) refreshPublishing();  // may have missed some
    };
    socket.onclose = async (closed) => {
      if (feed.stopped) return;
      // 4401: the token expired or was refused. Renew it unless another request already has; a refresh that
      // fails for a while (5xx, network) is retried on the next reconnect; a refused one ends the session.
      if (closed.code === 4401 && state.access === token && !(await refreshTokens().catch(() => true))) {
        showLogin("Session expired"); return;
      }
      feed.failures += 1;  // 1, 2, 4 … 30 s between tries while the server or the refresh keeps failing
      setTimeout(connect, Math.min(30_000, 1000 * 2 ** (feed.failures - 1)));
    };
  };
  connect();
}

function stopWatchingPublications() {
  if (publicationFeed) { publicationFeed.stopped = true; publicationFeed.socket?.close(); publicationFeed = null; }
}

let publishingRefresh = null;
function refreshPublishing() {  // a burst of changes is one reload of the queue and the calendar
  if ($("#publishing-panel").hidden || publishingRefresh) return;
  publishingRefresh = setTimeout(() => { publishingRefresh = null; loadPublishing(); }, 300);
}

// Results that ended together are told together: one toast (and one notification) per burst.
const endedPublications = [];
let endedFlush = null;
function publicationChanged(publication) {
  refreshPublishing();
  if (publication.status === "requested" || !awaitingResult.delete(publication.publication_id)) return;
  endedPublications.push(publication);
  endedFlush ??= setTimeout(tellEndedPublications, 500);
}

function tellEndedPublications() {
  const ended = endedPublications.splice(0);
  endedFlush = null;
  const published = ended.filter((p) => p.status === "published");
  const failed = ended.filter((p) => p.status === "failed");
  const messages = [];
  if (published.length === 1) messages.push([`Published “${published[0].title}” to WordPress`, "success"]);
  else if (published.length) messages.push([`${published.length} items published to WordPress`, "success"]);
  if (failed.length === 1) messages.push([`Publishing “${failed[0].title}” failed: ${failed[0].reason}`, "error"]);
  else if (failed.length) messages.push([`${failed.length} publications failed (first: “${failed[0].title}”: ${failed[0].reason})`, "error"]);
  for (const [text, kind] of messages) {
    toast(text, kind);
    if (document.hidden && "Notification" in window && Notification.permission === "granted") {
      try { new Notification("Writer Images", { body: text, tag: `wi-publishing-${kind}` }); }
      catch { /* a browser that only notifies from a service worker (Android): the toast is there */ }
    }
  }
}

function showNotifyMe() {
  const button = $("#notify-me");
  button.hidden = !("Notification" in window) || Notification.permission !== "default";
}

// --- wiring -------------------------------------------------------------------------------------

function showLogin(message = "") {
  stopWatchingChanges(); stopWatchingPublications();
  $("#app").hidden = true; $("#login").hidden = false; $("#login-error").textContent = message;
}

async function showApp() {
  $("#login").hidden = true; $("#app").hidden = false;
  await Promise.all([loadSettings().catch(() => {}), loadSites().catch(() => {})]);
  await loadImages();
  watchChanges(); watchPublications(); showNotifyMe();
}

function resetAndLoad() { state.page = 1; loadImages(); }

function bind() {
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      setTokens(await fetchAPI("/v1/auth/login", { method: "POST", body: { email: form.email.value, password: form.password.value }, retry: false }));
      await showApp();
    } catch (err) { $("#login-error").textContent = err.message; }
  });
  $("#logout").addEventListener("click", async () => {
    await fetchAPI("/v1/auth/logout", { method: "POST", body: { refresh_token: state.refresh } }).catch(() => {});
    setTokens(null); showLogin();
  });
  let debounce;
  $("#search").addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(resetAndLoad, 500); });
  for (const id of ["#filter-overall", "#filter-sync", "#filter-image-type", "#filter-image-status", "#ordering"]) {
    $(id).addEventListener("change", resetAndLoad);
  }
  $("#site-select").addEventListener("change", async () => {
    state.siteId = $("#site-select").value; localStorage.setItem("wi.site", state.siteId);
    await loadSectors(); window.dispatchEvent(new Event("siteChanged"));
  });
  $("#sector-select").addEventListener("change", () => {
    state.sectorId = $("#sector-select").value; localStorage.setItem("wi.sector", state.sectorId);
    window.dispatchEvent(new Event("sectorChanged"));
  });
  window.addEventListener("siteChanged", resetAndLoad);
  window.addEventListener("sectorChanged", resetAndLoad);
  $("#prev").addEventListener("click", () => { state.page -= 1; loadImages(); });
  $("#next").addEventListener("click", () => { state.page += 1; loadImages(); });
  $("#select-all").addEventListener("change", (e) => {
    for (const row of state.rows) e.target.checked ? state.selected.add(row.content_id) : state.selected.delete(row.content_id);
    renderRows();
  });
  $("#rows").addEventListener("change", (e) => {
    const id = Number(e.target.dataset.select);
    if (!id) return;
    e.target.checked ? state.selected.add(id) : state.selected.delete(id);
    updateBulk();
  });
  $("#rows").addEventListener("click", (e) => {
    const preview = e.target.dataset.preview;
    if (preview) { $("#image-modal-img").src = preview; $("#image-modal-img").alt = e.target.alt; $("#image-modal").showModal(); return; }
    const id = Number(e.target.dataset.id);
    ({ publish: publishOne, generate: openQueue, status: openStatus })[e.target.dataset.action]?.(id);
  });
  $("#rows").addEventListener("keydown", (e) => {  // a preview opens from the keyboard as with a click
    if ((e.key === "Enter" || e.key === " ") && e.target.dataset.preview) { e.preventDefault(); e.target.click(); }
  });
  $("#bulk-publish").addEventListener("click", publishBulk);
  $("#queue-close").addEventListener("click", () => $("#queue-modal").close());
  $("#status-cancel").addEventListener("click", () => $("#status-modal").close());
  document.querySelectorAll("#status-modal [data-status]").forEach((b) => b.addEventListener("click", () => updateStatus(b.dataset.status)));
  $("#image-close").addEventListener("click", () => $("#image-modal").close());
  $("#toggle-logs").addEventListener("click", () => { const p = $("#logs-panel"); p.hidden = !p.hidden; if (!p.hidden) loadLogs().catch((err) => toast(`Failed to load AI function logs: ${err.message}`, "error")); });
  $("#toggle-settings").addEventListener("click", () => { const p = $("#settings-panel"); p.hidden = !p.hidden; });
  $("#toggle-publishing").addEventListener("click", () => { const p = $("#publishing-panel"); p.hidden = !p.hidden; if (!p.hidden) loadPublishing(); });
  $("#queue-status").addEventListener("change", () => loadPublicationQueue().catch((err) => toast(err.message, "error")));
  $("#queue-refresh").addEventListener("click", loadPublishing);
  $("#queue-rows").addEventListener("click", (e) => { if (e.target.dataset.retry) retryPublication(Number(e.target.dataset.retry)); });
  $("#notify-me").addEventListener("click", () => Notification.requestPermission().then(showNotifyMe));
  $("#calendar-prev").addEventListener("click", () => moveCalendar(-1));
  $("#calendar-next").addEventListener("click", () => moveCalendar(1));
  $("#settings-form").addEventListener("submit", saveSettings);
  $("#settings-form").provider.addEventListener("change", (e) => fillModels(e.target.value, MODELS[e.target.value][0]));
}

bind();
// A refresh that fails for a while keeps the session: the app shows, and its requests retry the refresh
// (and say why they failed).
if (state.refresh) refreshTokens().then((ok) => (ok ? showApp() : showLogin("Session expired")), () => showApp());
else showLogin();
