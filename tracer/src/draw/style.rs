//! The picture's look in one place: fonts, their widths (a monospace font, so the layout
//! can size boxes from the text it holds), colours and spacing.
use svg::node::element::{Definitions, Marker, Path, Rectangle, Style};
use svg::{Document, Node};

/// Text sizes in px and the advance of one character at that size (DejaVu Sans Mono, the
/// monospace font Debian ships with librsvg, advances 0.602 em; a little margin on top).
pub const FONT: f64 = 12.0;
pub const CHAR: f64 = 7.4;
pub const SMALL: f64 = 10.0;
pub const SMALL_CHAR: f64 = 6.2;
pub const TITLE: f64 = 15.0;
pub const TITLE_CHAR: f64 = 9.3;

pub const MARGIN: f64 = 16.0;
pub const LINE: f64 = 16.0;

/// The request path (gateway toward target) and the reply path.
pub const REQUEST: &str = "#1f6fd1";
pub const REPLY: &str = "#e07000";
pub const DROP: &str = "#d62728";

/// Width of `text` at the normal size.
pub fn width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR
}

pub fn small_width(text: &str) -> f64 {
    text.chars().count() as f64 * SMALL_CHAR
}

/// The stylesheet and the arrowheads every picture uses.
pub fn defs() -> (Style, Definitions) {
    let style = Style::new(format!(
        "text {{ font-family: 'DejaVu Sans Mono', monospace; font-size: {FONT}px; fill: #222; }}\n\
         .small {{ font-size: {SMALL}px; }}\n\
         .title {{ font-size: {TITLE}px; font-weight: bold; }}\n\
         .role {{ font-weight: bold; }}\n\
         .request {{ stroke: {REQUEST}; fill: {REQUEST}; }}\n\
         .reply {{ stroke: {REPLY}; fill: {REPLY}; }}\n\
         text.request, text.reply {{ stroke: none; }}\n\
         .drop {{ stroke: {DROP}; fill: {DROP}; }}\n\
         text.drop {{ stroke: none; }}"
    ));
    let defs = Definitions::new()
        .add(arrowhead("head-request", REQUEST))
        .add(arrowhead("head-reply", REPLY));
    (style, defs)
}

fn arrowhead(id: &str, colour: &str) -> Marker {
    Marker::new()
        .set("id", id)
        .set("viewBox", "0 0 10 10")
        .set("refX", 9)
        .set("refY", 5)
        .set("markerWidth", 7)
        .set("markerHeight", 7)
        .set("orient", "auto")
        .add(
            Path::new()
                .set("d", "M 0 0 L 10 5 L 0 10 z")
                .set("fill", colour),
        )
}

/// Milliseconds with microsecond precision, as the text view prints them.
pub fn ms(ns: u64) -> String {
    format!("+{:.3} ms", ns as f64 / 1e6)
}

/// A page of `width` x `height` px: its style and definitions, then a white background (a
/// PNG rendering would be transparent without it).
pub fn page(
    width: f64,
    height: f64,
    style: impl Into<Box<dyn Node>>,
    defs: impl Into<Box<dyn Node>>,
) -> Document {
    Document::new()
        .set("viewBox", (0, 0, width, height))
        .set("width", width)
        .set("height", height)
        .add(style)
        .add(defs)
        .add(
            Rectangle::new()
                .set("width", width)
                .set("height", height)
                .set("fill", "#ffffff"),
        )
}
