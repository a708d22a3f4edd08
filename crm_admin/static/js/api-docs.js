// The API's interactive documentation (Swagger UI, served from this server): started here rather than
// in an inline script, which the Content-Security-Policy forbids.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    deepLinking: true,
    persistAuthorization: false,
  });
})();
