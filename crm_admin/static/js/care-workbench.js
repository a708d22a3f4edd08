/* crm-admin: the care workbench (care/workbench.html). A task row's 执行 and 记录反馈 links open the
 * page's one execute or feedback dialog with that row's task in it: its id, care type and the detail
 * already recorded come from the link's data- attributes. Without this script the links load the page
 * with that row's own forms open (?open=<id>), so nothing here is needed to act on a task. */
(function () {
  'use strict';
  var bootstrap = window.tabler && window.tabler.bootstrap;
  var dialogs = {
    execute: document.getElementById('care-execute-dialog'),
    feedback: document.getElementById('care-feedback-dialog')
  };
  if (!bootstrap || !bootstrap.Modal || !dialogs.execute || !dialogs.feedback) return;

  // "customer · contact" of the row, as its cells show them (the 2nd and 3rd columns)
  function subjectOf(link) {
    var row = link.closest('tr');
    if (!row || row.cells.length < 3) return '';
    return row.cells[1].textContent.trim() + ' · ' + row.cells[2].textContent.trim();
  }

  function fill(dialog, link) {
    var form = dialog.querySelector('form');
    form.reset();
    form.elements.care_id.value = link.getAttribute('data-care-id') || '';
    var subject = dialog.querySelector('[data-care-subject]');
    if (subject) subject.textContent = subjectOf(link);
    var type = form.elements.care_type;
    if (type) {
      type.value = link.getAttribute('data-care-type') || '';
      if (type.selectedIndex < 0) type.selectedIndex = 0;  // a care type no longer offered
    }
    if (form.elements.detail) form.elements.detail.value = link.getAttribute('data-detail') || '';
  }

  document.addEventListener('click', function (event) {
    var link = event.target.closest ? event.target.closest('a[data-care-action]') : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button) return;
    var dialog = dialogs[link.getAttribute('data-care-action')];
    if (!dialog) return;
    event.preventDefault();
    fill(dialog, link);
    bootstrap.Modal.getOrCreateInstance(dialog).show();
  });

  Object.keys(dialogs).forEach(function (kind) {
    dialogs[kind].addEventListener('shown.bs.modal', function () {
      var text = dialogs[kind].querySelector('textarea');
      if (text) text.focus();
    });
  });
})();
