// Thalian page behaviour. No inline handlers: everything is wired from data attributes (strict CSP).
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function wire(root) {
    // Organization switcher: navigate on change.
    root.querySelectorAll("[data-org-switch-select]").forEach(function (sel) {
      if (sel.dataset.wired) return; sel.dataset.wired = "1";
      sel.addEventListener("change", function () { window.location.assign(sel.value); });
    });
    // "Select all on this page" checkboxes: data-select-all="name-of-item-checkboxes".
    root.querySelectorAll("[data-select-all]").forEach(function (box) {
      if (box.dataset.wired) return; box.dataset.wired = "1";
      box.addEventListener("change", function () {
        document.querySelectorAll('input[type=checkbox][name="' + box.dataset.selectAll + '"]').forEach(function (c) {
          c.checked = box.checked;
        });
      });
    });
    // Column chooser: checkboxes with data-column="key" toggle cells with data-col="key"; remembered locally.
    root.querySelectorAll("[data-column]").forEach(function (box) {
      if (box.dataset.wired) return; box.dataset.wired = "1";
      var storeKey = "thalian-col-" + (box.dataset.columnScope || "default") + "-" + box.dataset.column;
      var saved = window.localStorage ? window.localStorage.getItem(storeKey) : null;
      if (saved !== null) box.checked = saved === "1";
      var apply = function () {
        document.querySelectorAll('[data-col="' + box.dataset.column + '"]').forEach(function (cell) {
          cell.classList.toggle("col-hidden", !box.checked);
        });
      };
      box.addEventListener("change", function () {
        if (window.localStorage) window.localStorage.setItem(storeKey, box.checked ? "1" : "0");
        apply();
      });
      apply();
    });
    // Confirmation before destructive or bulk actions: data-confirm="message" on a form or button.
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.wired) return; form.dataset.wired = "1";
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
    root.querySelectorAll("button[data-confirm]").forEach(function (btn) {
      if (btn.dataset.wired) return; btn.dataset.wired = "1";
      btn.addEventListener("click", function (ev) {
        if (!window.confirm(btn.dataset.confirm)) ev.preventDefault();
      });
    });
    // Auto-submit filter controls: data-autosubmit on a form submits it when a select changes.
    root.querySelectorAll("form[data-autosubmit] select").forEach(function (sel) {
      if (sel.dataset.wired) return; sel.dataset.wired = "1";
      sel.addEventListener("change", function () {
        if (sel.form.requestSubmit) sel.form.requestSubmit(); else sel.form.submit();
      });
    });
  }

  onReady(function () { wire(document); });
  document.addEventListener("htmx:afterSettle", function (ev) { wire(ev.target); });
  window.Thalian = { wire: wire };
})();
