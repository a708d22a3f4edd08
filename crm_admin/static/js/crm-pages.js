/* crm-admin: the small behaviours of our pages. The Content-Security-Policy runs no inline script,
 * so they live here, each started only on the page that has its element; parameters come from
 * data- attributes. Loaded last (after jQuery, Tabler and SQLAdmin's script) on every page. */
(function () {
  'use strict';

  // Flash messages (sqladmin/flash.html): shown as toasts for three seconds.
  Array.prototype.forEach.call(document.querySelectorAll('.admin-toast'), function (el) {
    if (window.tabler) new window.tabler.bootstrap.Toast(el, { delay: 3000 }).show();
  });

  // Bars whose length is data (audit analysis): a width set through the DOM, not a style attribute.
  Array.prototype.forEach.call(document.querySelectorAll('[data-bar-width]'), function (el) {
    var width = parseFloat(el.getAttribute('data-bar-width'));
    el.style.width = (isFinite(width) ? Math.max(0, Math.min(100, width)) : 0) + '%';
  });

  // Customer query (customers/list.html): one sort select fills sortBy and sort; empty conditions
  // are not sent, which keeps the URL short.
  (function () {
    var sel = document.querySelector('[data-sort-select]');
    if (!sel || !sel.form) return;
    var form = sel.form;
    function apply() {
      var parts = (sel.value || '').split(':');
      form.querySelector('input[name=sortBy]').value = parts[0] || '';
      form.querySelector('input[name=sort]').value = parts[1] || '';
    }
    sel.addEventListener('change', apply);
    form.addEventListener('submit', function () {
      apply();
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && !el.value) el.disabled = true;
      });
    });
  })();

  // Import job (imports/job.html): progress polled until the job stops running.
  (function () {
    var root = document.getElementById('import-job');
    if (!root) return;
    var statusUrl = root.getAttribute('data-status-url');
    function byId(id) { return document.getElementById(id); }
    function show(j) {
      byId('job-status').textContent = j.status_label;
      byId('job-processed').textContent = j.processed;
      var pct = j.total ? Math.min(100, Math.round(j.processed * 100 / j.total)) : (j.running ? 30 : 100);
      byId('job-progress').style.width = pct + '%';
      var msg = byId('job-message');
      if (j.message) {
        msg.textContent = j.message;
        msg.hidden = false;
        msg.className = 'alert ' + (j.status === 'failed' ? 'alert-danger' : (j.status === 'done' ? 'alert-success' : 'alert-info'));
      }
      byId('apply-form').hidden = !(j.status === 'validated' && j.valid > 0);
      byId('errors-link').hidden = !(j.has_errors && !j.running);
      if (j.running) setTimeout(poll, 800);
    }
    function poll() {
      fetch(statusUrl, { headers: { 'Accept': 'application/json' }, credentials: 'same-origin' })
        .then(function (r) { return r.json(); }).then(show).catch(function () { setTimeout(poll, 2000); });
    }
    poll();
  })();

  // Manual care record (care/workbench.html): customers looked up as the user types, then the
  // chosen customer's contacts. The blank options keep the texts the server rendered.
  (function () {
    var search = document.getElementById('manual-customer-search');
    var select = document.getElementById('manual-customer');
    var linkman = document.getElementById('manual-linkman');
    if (!search || !select || !linkman) return;
    var customerBlank = select.options.length ? select.options[0].textContent : '';
    var linkmanBlank = linkman.options.length ? linkman.options[0].textContent : '';
    var timer = null;
    function fill(el, items, blank) {
      el.textContent = '';
      var opt = document.createElement('option');
      opt.value = '';
      opt.textContent = blank;
      el.appendChild(opt);
      items.forEach(function (it) {
        var o = document.createElement('option');
        o.value = it.id;
        o.textContent = it.text;
        el.appendChild(o);
      });
    }
    function getJson(url) {
      return fetch(url, { credentials: 'same-origin' }).then(function (r) { return r.json(); });
    }
    function lookup() {
      getJson(search.getAttribute('data-customers-url') + '?q=' + encodeURIComponent(search.value))
        .then(function (d) {
          fill(select, d.results, customerBlank);
          if (d.results.length === 1) {
            select.value = d.results[0].id;
            select.dispatchEvent(new Event('change'));
          }
        });
    }
    search.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(lookup, 250); });
    select.addEventListener('change', function () {
      if (!select.value) { fill(linkman, [], linkmanBlank); return; }
      getJson(search.getAttribute('data-linkmen-url') + '?customer_id=' + encodeURIComponent(select.value))
        .then(function (d) { fill(linkman, d.results, linkmanBlank); });
    });
    lookup();
  })();

  // A relation picker that follows another field of its form (core/views.py narrowed_ref: the contact
  // of the chosen customer, data-narrow-by="customer"). SQLAdmin's script has set it up as a plain
  // look-up; here it is set up again so that each look-up sends the other field's value. Until that
  // field has a value the picker is disabled and says what to choose first; a new choice there clears it.
  (function () {
    var $ = window.jQuery;
    if (!$ || !$.fn.select2 || !window.crm) return;
    $('select[data-narrow-by]').each(function () {
      var $select = $(this);
      var by = $select.attr('data-narrow-by');
      var parent = this.form ? this.form.querySelector('[name="' + by + '"]') : null;
      if (!parent) return;
      var $parent = $(parent);
      var name = $select.attr('name');
      var allowBlank = !!$select.data('allowBlank');
      var searchText = $select.attr('placeholder') || window.crm.t('search');
      var firstText = window.crm.t('choose_' + by + '_first');
      var last = $parent.val() || '';
      function chosen() { return $parent.val() || ''; }
      function setUp() {
        if ($select.data('select2')) $select.select2('destroy');
        $select.prop('disabled', !chosen());
        $select.select2({
          minimumInputLength: 1,
          placeholder: chosen() ? searchText : firstText,
          allowClear: allowBlank,
          ajax: {
            url: $select.data('url'),
            dataType: 'json',
            data: function (params) {
              var query = { name: name, term: params.term };
              query[by] = chosen();
              return query;
            }
          }
        });
      }
      $parent.on('change', function () {
        if (chosen() === last) return;
        last = chosen();
        $select.val(null).empty();
        setUp();
        $select.trigger('change');
      });
      setUp();
    });
  })();

  // Transfer (transfers/transfer.html): the header check box selects every listed customer.
  (function () {
    var all = document.getElementById('check-all');
    if (!all) return;
    all.addEventListener('change', function () {
      Array.prototype.forEach.call(document.querySelectorAll('.customer-check'), function (box) {
        box.checked = all.checked;
      });
    });
  })();

  // A link that takes the rows checked in a list along (customers/list.html → 退回公海): each checked
  // row's id is added to its address as ``<data-with-selected>=<id>``.
  (function () {
    Array.prototype.forEach.call(document.querySelectorAll('a[data-with-selected]'), function (link) {
      link.addEventListener('click', function () {
        var name = link.getAttribute('data-with-selected');
        var url = new URL(link.href, window.location.href);
        url.searchParams.delete(name);
        Array.prototype.forEach.call(document.querySelectorAll('.select-box:checked'), function (box) {
          var pk = box.previousElementSibling;
          if (pk && pk.value) url.searchParams.append(name, pk.value);
        });
        link.href = url.toString();
      });
    });
  })();

  // "→ 可左右滚动" (list tables, the pipeline, the policy grid): shown above a box only while the box
  // is wider than the window shows, so a column out of sight is not taken for a missing one.
  (function () {
    var hints = document.querySelectorAll('.crm-scroll-hint');
    if (!hints.length) return;
    function update() {
      Array.prototype.forEach.call(hints, function (hint) {
        var box = hint.nextElementSibling;
        if (box) hint.hidden = box.scrollWidth <= box.clientWidth + 1;
      });
    }
    update();
    window.addEventListener('resize', update);
    window.addEventListener('load', update);
  })();
})();
