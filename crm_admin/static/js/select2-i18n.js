/* Select2 (the relation pickers) in the page's language: its own texts are English. Loaded after
 * select2.full.min.js and before SQLAdmin's main script initialises the pickers. */
(function ($) {
  'use strict';
  if (!$ || !$.fn || !$.fn.select2 || !window.crm) return;
  var t = window.crm.t;
  var f = window.crm.format;
  $.fn.select2.defaults.set('language', {
    errorLoading: function () { return t('select2_error'); },
    inputTooLong: function (args) { return f(t('select2_too_long'), { n: args.input.length - args.maximum }); },
    inputTooShort: function (args) { return f(t('select2_too_short'), { n: args.minimum - args.input.length }); },
    loadingMore: function () { return t('select2_loading_more'); },
    maximumSelected: function (args) { return f(t('select2_max'), { n: args.maximum }); },
    noResults: function () { return t('select2_no_results'); },
    searching: function () { return t('select2_searching'); },
    removeAllItems: function () { return t('select2_remove_all'); },
    removeItem: function () { return t('select2_remove'); },
    search: function () { return t('search'); }
  });
})(window.jQuery);
