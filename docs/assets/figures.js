// Each figure of a page links to its full-size PNG, so a click shows it at a readable size.
// `document$` is Material for MkDocs' page-load observable (it also fires on instant loading).
document$.subscribe(function () {
  document.querySelectorAll(".md-typeset img").forEach(function (img) {
    if (img.closest("a")) {
      return;
    }
    var link = document.createElement("a");
    link.href = img.getAttribute("src");
    link.className = "figure-link";
    link.title = "Open the full-size figure";
    img.replaceWith(link);
    link.appendChild(img);
  });
});
