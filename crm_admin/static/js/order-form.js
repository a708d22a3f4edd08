/* The order form (orders/order_form.html): a product picker per line that fills in the list price,
 * lines added and removed, each line's total and the order total as the user types.
 *
 * The arithmetic is the server's (crm_admin/orders/service.py): quantity × unit price × discount ÷ 100,
 * rounded half up to the fen, summed over the lines. It is done on whole numbers (BigInt: fen and
 * hundredths of a percent), so 3 × 19.99 at 95折 shows 56.97 here exactly as the server keeps it. The
 * server computes the amount again on save; its figure is the one kept. */
(function ($) {
  'use strict';
  var form = document.getElementById('order-form');
  if (!form || !$ || !$.fn || !$.fn.select2 || typeof BigInt === 'undefined') return;
  var body = document.getElementById('order-lines');
  var template = document.getElementById('order-line-template');
  var totalCell = document.getElementById('order-total');
  var productUrl = form.getAttribute('data-product-url');
  var maxLines = parseInt(form.getAttribute('data-max-lines'), 10) || 200;
  var ZERO = BigInt(0), HALF = BigInt(5000), SCALE = BigInt(10000), HUNDRED = BigInt(100);

  // "1,999.5" → 199950 (hundredths); null when it is not a number with at most two decimals
  function hundredths(text) {
    var m = /^(\d{1,15})(?:\.(\d{0,2}))?$/.exec(String(text || '').replace(/,/g, '').trim());
    if (!m) return null;
    return BigInt(m[1]) * HUNDRED + BigInt(((m[2] || '') + '00').slice(0, 2));
  }

  function whole(text) {
    var s = String(text || '').replace(/,/g, '').trim();
    return /^\d{1,10}$/.test(s) ? BigInt(s) : null;
  }

  function money(fen) {
    var yuan = (fen / HUNDRED).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    var cents = (fen % HUNDRED).toString();
    return '¥' + yuan + '.' + (cents.length < 2 ? '0' + cents : cents);
  }

  function field(row, cls) { return row.querySelector('.' + cls); }

  function flag(input, bad) { input.classList.toggle('is-invalid', bad); }

  // a line's total in fen; undefined for a line without a product, null for one that does not compute
  function lineFen(row) {
    if (!field(row, 'order-product').value) return undefined;
    var qtyInput = field(row, 'order-quantity');
    var priceInput = field(row, 'order-unit-price');
    var discountInput = field(row, 'order-discount');
    var qty = whole(qtyInput.value);
    var price = priceInput.value.trim() === '' ? hundredths(row.getAttribute('data-list-price'))
      : hundredths(priceInput.value);
    var discount = discountInput.value.trim() === '' ? SCALE : hundredths(discountInput.value);
    flag(qtyInput, qty === null || qty <= ZERO);
    flag(priceInput, priceInput.value.trim() !== '' && price === null);
    flag(discountInput, discount === null || discount > SCALE);
    if (qty === null || qty <= ZERO || price === null || discount === null || discount > SCALE) return null;
    return (qty * price * discount + HALF) / SCALE;
  }

  function refresh() {
    var total = ZERO, complete = true;
    Array.prototype.forEach.call(body.querySelectorAll('tr.order-line'), function (row, i) {
      field(row, 'order-line-no').textContent = String(i + 1);
      var fen = lineFen(row);
      field(row, 'order-line-total').textContent = fen === undefined || fen === null ? '—' : money(fen);
      if (fen === null) complete = false;
      else if (fen !== undefined) total += fen;
    });
    totalCell.textContent = complete ? money(total) : '—';
    document.getElementById('order-add-line').disabled = body.querySelectorAll('tr.order-line').length >= maxLines;
  }

  function initProduct(row) {
    var $select = $(field(row, 'order-product'));
    $select.select2({
      width: '100%',
      minimumInputLength: 0,
      ajax: {
        url: productUrl,
        dataType: 'json',
        delay: 200,
        data: function (params) { return { term: params.term || '' }; }
      }
    });
    $select.on('select2:select', function (e) {
      var price = (e.params && e.params.data && e.params.data.price) || '';
      row.setAttribute('data-list-price', price);
      if (price) field(row, 'order-unit-price').value = price;
      refresh();
    });
  }

  function addLine() {
    var row = template.content.firstElementChild.cloneNode(true);
    body.appendChild(row);
    initProduct(row);
    refresh();
    return row;
  }

  Array.prototype.forEach.call(body.querySelectorAll('tr.order-line'), initProduct);
  document.getElementById('order-add-line').addEventListener('click', function () {
    $(field(addLine(), 'order-product')).select2('open');
  });
  body.addEventListener('click', function (e) {
    var button = e.target.closest('.order-remove-line');
    if (!button) return;
    var row = button.closest('tr.order-line');
    $(field(row, 'order-product')).select2('destroy');
    row.remove();
    if (!body.querySelector('tr.order-line')) addLine();
    refresh();
  });
  body.addEventListener('input', refresh);
  refresh();
})(window.jQuery);
