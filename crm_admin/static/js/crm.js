/* crm-admin: CSRF token on every state-changing request, and small helpers.
 *
 * The token is in <meta name="csrf-token">. It is added as the X-CSRF-Token header to
 * XMLHttpRequest (so jQuery's $.ajax, used by SQLAdmin's delete) and fetch (SQLAdmin's import)
 * for non-GET same-origin requests, and as a hidden csrf_token input to any POST form that lacks
 * one. No external resources. */
(function () {
  'use strict';

  function token() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : '';
  }

  var SAFE = /^(GET|HEAD|OPTIONS|TRACE)$/i;

  function sameOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (e) {
      return false;
    }
  }

  // XMLHttpRequest (jQuery ajax)
  var open = XMLHttpRequest.prototype.open;
  var send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this._crmMethod = method;
    this._crmUrl = url;
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    if (this._crmMethod && !SAFE.test(this._crmMethod) && sameOrigin(this._crmUrl)) {
      this.setRequestHeader('X-CSRF-Token', token());
    }
    return send.apply(this, arguments);
  };

  // fetch
  if (window.fetch) {
    var originalFetch = window.fetch;
    window.fetch = function (input, init) {
      init = init || {};
      var method = init.method || (input && input.method) || 'GET';
      var url = typeof input === 'string' ? input : (input && input.url) || '';
      if (!SAFE.test(method) && sameOrigin(url)) {
        var headers = new Headers(init.headers || (input && input.headers) || {});
        if (!headers.has('X-CSRF-Token')) {
          headers.set('X-CSRF-Token', token());
        }
        init.headers = headers;
      }
      return originalFetch.call(this, input, init);
    };
  }

  function addTokenInput(form) {
    if ((form.getAttribute('method') || 'get').toLowerCase() !== 'post') return;
    if (form.querySelector('input[name="csrf_token"]')) return;
    var action = form.getAttribute('action');
    if (action && !sameOrigin(action)) return;
    var input = document.createElement('input');
    input.type = 'hidden';
    input.name = 'csrf_token';
    input.value = token();
    form.appendChild(input);
  }

  // forms rendered by the server, added later, and submitted
  document.addEventListener('DOMContentLoaded', function () {
    Array.prototype.forEach.call(document.querySelectorAll('form'), addTokenInput);
  });
  document.addEventListener('submit', function (event) {
    if (event.target && event.target.tagName === 'FORM') addTokenInput(event.target);
  }, true);

  /* Submit a POST to url (with the token) as a normal navigation: used for SQLAdmin actions,
   * which we serve as POST-only routes. */
  function postTo(url) {
    var form = document.createElement('form');
    form.method = 'post';
    form.action = url;
    form.style.display = 'none';
    document.body.appendChild(form);
    addTokenInput(form);
    form.submit();
  }

  var texts = null;
  function t(key, fallback) {
    if (texts === null) {
      var el = document.getElementById('crm-i18n');
      try {
        texts = el ? JSON.parse(el.textContent) : {};
      } catch (e) {
        texts = {};
      }
    }
    return texts[key] || fallback || key;
  }

  function format(template, values) {
    return String(template || '').replace(/%\((\w+)\)s/g, function (match, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? values[key] : match;
    });
  }

  window.crm = { csrfToken: token, postTo: postTo, t: t, format: format };
})();
