//! Charts: plain data structs drawn to SVG or PNG by one drawing routine each.
//!
//! Every chart implements [`Chart`]: [`Chart::draw`] draws onto any plotters drawing area, and
//! the provided [`Chart::to_svg`], [`Chart::to_png`] and [`Chart::save`] call it once with an SVG
//! backend or an in-memory bitmap backend, so the two formats never drift apart.

mod axis;
mod bar;
mod grid;
mod heatmap;
mod line;
mod raster;
mod scatter;
mod surface;
mod tree;

use std::path::Path;

use plotters::{
    coord::Shift,
    prelude::{BitMapBackend, DrawingArea, DrawingBackend, IntoDrawingArea, SVGBackend},
};

pub(crate) use axis::Axis;
pub use bar::{BarChart, BarSeries};
pub use grid::ChartGrid;
pub use heatmap::{Heatmap, Mark};
pub use line::{LineChart, Panel, Series};
pub use scatter::{ScatterChart, ScatterPoint};
pub use surface::Surface3d;
pub use tree::{TreeDiagram, TreeEdge, TreeNode};

use crate::{Error, Result, fsutil, style};

/// A picture's size in pixels (SVG user units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Size {
    /// `width` × `height` pixels.
    pub const fn new(width: u32, height: u32) -> Self {
        Size { width, height }
    }
}

/// The largest side a chart may have (a guard against absurd allocations).
pub const MAX_SIDE: u32 = 16_384;
/// The largest number of pixels a chart may have (64 Mpx: a 192 MiB bitmap).
pub const MAX_PIXELS: u64 = 1 << 26;

/// The picture file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureFormat {
    /// Portable Network Graphics (8-bit RGB).
    Png,
    /// Scalable Vector Graphics (text).
    Svg,
}

impl PictureFormat {
    /// The format a file name asks for: `.png` or `.svg` (any case); anything else is an error
    /// naming the path and the accepted extensions.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(PictureFormat::Png),
            Some("svg") => Ok(PictureFormat::Svg),
            _ => Err(Error::UnsupportedPictureFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Something drawable as a picture.
///
/// Implementors provide [`Chart::describe`], [`Chart::size`] and [`Chart::draw`]; the output
/// methods are provided. (`draw` is generic over the backend, so `Chart` is not object safe: use
/// [`AnyChart`] for a list of mixed charts.)
pub trait Chart {
    /// The chart for error messages, e.g. `line chart "training curves"`.
    fn describe(&self) -> String;

    /// The picture size this chart will be drawn at (its own setting or a default fitted to
    /// its content). Drawing refuses a zero size or one above [`MAX_SIDE`] / [`MAX_PIXELS`].
    fn size(&self) -> Result<Size>;

    /// Draws the chart onto `area` (sized to [`Chart::size`]), background included.
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()>;

    /// The chart as an SVG document.
    fn to_svg(&self) -> Result<String> {
        style::ensure_font();
        let size = checked(self, self.size()?)?;
        let mut out = String::new();
        {
            let area =
                SVGBackend::with_string(&mut out, (size.width, size.height)).into_drawing_area();
            self.draw(&area)?;
            area.present().map_err(draw_err(self))?;
        }
        Ok(out)
    }

    /// The chart as PNG bytes (8-bit RGB).
    fn to_png(&self) -> Result<Vec<u8>> {
        style::ensure_font();
        let size = checked(self, self.size()?)?;
        let mut rgb = vec![255u8; size.width as usize * size.height as usize * 3];
        {
            let area = raster::Crisp(BitMapBackend::with_buffer(
                &mut rgb,
                (size.width, size.height),
            ))
            .into_drawing_area();
            self.draw(&area)?;
            area.present().map_err(draw_err(self))?;
        }
        encode_png(&rgb, size).map_err(|e| Error::Draw {
            chart: self.describe(),
            reason: format!("PNG encoding: {e}"),
        })
    }

    /// Writes the chart to `path`, as PNG or SVG after its extension, atomically (a temporary
    /// file in the same directory renamed into place).
    fn save(&self, path: &Path) -> Result<()> {
        let bytes = match PictureFormat::from_path(path)? {
            PictureFormat::Png => self.to_png()?,
            PictureFormat::Svg => self.to_svg()?.into_bytes(),
        };
        fsutil::write_atomic(path, &bytes)
    }
}

fn checked<C: Chart + ?Sized>(chart: &C, size: Size) -> Result<Size> {
    let pixels = size.width as u64 * size.height as u64;
    if size.width == 0
        || size.height == 0
        || size.width > MAX_SIDE
        || size.height > MAX_SIDE
        || pixels > MAX_PIXELS
    {
        return Err(Error::InvalidChart {
            chart: chart.describe(),
            reason: format!(
                "size {}x{} pixels; each side must be between 1 and {MAX_SIDE}, and the area \
                 at most {MAX_PIXELS} pixels",
                size.width, size.height
            ),
        });
    }
    Ok(size)
}

fn encode_png(rgb: &[u8], size: Size) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size.width, size.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(rgb)?;
        w.finish()?;
    }
    Ok(out)
}

/// Maps a plotters error to [`Error::Draw`] naming the chart.
pub(crate) fn draw_err<C: Chart + ?Sized, E: std::fmt::Display>(
    chart: &C,
) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Draw {
        chart: chart.describe(),
        reason: e.to_string(),
    }
}

/// `kind "title"`, or just `kind` for an untitled chart.
pub(crate) fn describe(kind: &str, title: &str) -> String {
    if title.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} {title:?}")
    }
}

/// Any chart of this crate, for code that keeps a list of mixed charts.
#[derive(Debug, Clone)]
pub enum AnyChart {
    /// A [`LineChart`].
    Line(LineChart),
    /// A [`Heatmap`].
    Heatmap(Heatmap),
    /// A [`BarChart`].
    Bar(BarChart),
    /// A [`Surface3d`].
    Surface(Surface3d),
    /// A [`TreeDiagram`].
    Tree(TreeDiagram),
    /// A [`ScatterChart`].
    Scatter(ScatterChart),
}

macro_rules! any_chart {
    ($($v:ident($t:ty)),*) => {
        $(impl From<$t> for AnyChart {
            fn from(c: $t) -> Self { AnyChart::$v(c) }
        })*
        impl Chart for AnyChart {
            fn describe(&self) -> String {
                match self { $(AnyChart::$v(c) => c.describe()),* }
            }
            fn size(&self) -> Result<Size> {
                match self { $(AnyChart::$v(c) => c.size()),* }
            }
            fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
                match self { $(AnyChart::$v(c) => c.draw(area)),* }
            }
        }
    };
}
any_chart!(
    Line(LineChart),
    Heatmap(Heatmap),
    Bar(BarChart),
    Surface(Surface3d),
    Tree(TreeDiagram),
    Scatter(ScatterChart)
);

/// Shared drawing pieces: title, legend, colour bar, text boxes.
pub(crate) mod common {
    use plotters::{
        coord::Shift,
        prelude::*,
        style::{
            FontDesc,
            text_anchor::{HPos, Pos, VPos},
        },
    };

    use super::Axis;
    use crate::{
        Error, Result,
        style::{self, ColorScale, FONT, INK},
    };

    /// The house style of axes, tick labels and grid lines, applied to a plotters mesh.
    pub fn house_mesh<'m, 'a, 'b, X, Y, XT, YT, DB>(
        mesh: &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>,
    ) -> &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>
    where
        X: plotters::coord::ranged1d::Ranged<ValueType = XT>
            + plotters::coord::ranged1d::ValueFormatter<XT>,
        Y: plotters::coord::ranged1d::Ranged<ValueType = YT>
            + plotters::coord::ranged1d::ValueFormatter<YT>,
        DB: DrawingBackend,
    {
        mesh.axis_desc_style(text(style::LABEL_SIZE, INK))
            .label_style(text(style::TICK_SIZE, INK))
            .bold_line_style(style::GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(INK)
    }

    /// A font of `size` pixels.
    pub fn font(size: f64) -> FontDesc<'static> {
        FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Normal)
    }

    /// Text style: `size` pixels in `color`.
    pub fn text(size: f64, color: RGBColor) -> TextStyle<'static> {
        font(size).color(&color)
    }

    /// Width and height in pixels of `s` at `size`.
    pub fn text_size(s: &str, size: f64) -> (u32, u32) {
        style::ensure_font();
        font(size)
            .box_size(s)
            .unwrap_or((s.chars().count() as u32 * size as u32 / 2, size as u32))
    }

    /// An absolute pixel (as `ChartContext::backend_coord` gives) relative to `area`.
    pub fn rel<DB: DrawingBackend>(
        area: &DrawingArea<DB, Shift>,
        (x, y): (i32, i32),
    ) -> (i32, i32) {
        let (bx, by) = area.get_base_pixel();
        (x - bx, y - by)
    }

    /// Draws `title` centred at the top of `area` and returns the area below it.
    pub fn titled<DB: DrawingBackend>(
        area: &DrawingArea<DB, Shift>,
        title: &str,
        map: &dyn Fn(String) -> Error,
    ) -> Result<DrawingArea<DB, Shift>> {
        if title.is_empty() {
            return Ok(area.clone());
        }
        area.titled(title, font(style::TITLE_SIZE).color(&INK))
            .map_err(|e| map(e.to_string()))
    }

    /// Draws `s` with its anchor at `(x, y)` on a translucent white box (so it reads over lines
    /// and colour).
    pub fn boxed_text<DB: DrawingBackend>(
        area: &DrawingArea<DB, Shift>,
        s: &str,
        (x, y): (i32, i32),
        size: f64,
        anchor: Pos,
        map: &dyn Fn(String) -> Error,
    ) -> Result<()> {
        let (w, h) = text_size(s, size);
        let (w, h) = (w as i32, h as i32);
        let x0 = match anchor.h_pos {
            HPos::Left => x,
            HPos::Center => x - w / 2,
            HPos::Right => x - w,
        };
        let y0 = match anchor.v_pos {
            VPos::Top => y,
            VPos::Center => y - h / 2,
            VPos::Bottom => y - h,
        };
        area.draw(&Rectangle::new(
            [(x0 - 3, y0 - 2), (x0 + w + 3, y0 + h + 3)],
            WHITE.mix(0.8).filled(),
        ))
        .map_err(|e| map(e.to_string()))?;
        area.draw(&Text::new(
            s.to_string(),
            (x0, y0),
            text(size, INK).pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(|e| map(e.to_string()))
    }

    /// A legend entry: its name, colour and marker shape.
    pub struct LegendEntry {
        /// The text.
        pub name: String,
        /// The colour.
        pub color: RGBColor,
        /// The marker.
        pub marker: Marker,
    }

    /// Legend markers.
    #[derive(Clone, Copy)]
    pub enum Marker {
        /// A short thick line (line charts).
        Line,
        /// A filled square (bars).
        Square,
        /// A filled circle (points).
        Dot,
    }

    /// Height of a legend row.
    pub const LEGEND_ROW: u32 = 26;

    /// Lays `entries` out in rows no wider than `width`: returns per row the entries' x offsets.
    fn legend_rows(entries: &[LegendEntry], width: i32) -> Vec<Vec<(usize, i32)>> {
        let mut rows: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
        let mut x = 0;
        for (i, e) in entries.iter().enumerate() {
            let w = text_size(&e.name, style::TICK_SIZE).0 as i32 + 26 + 22;
            if x > 0 && x + w > width {
                rows.push(Vec::new());
                x = 0;
            }
            rows.last_mut().expect("non-empty").push((i, x));
            x += w;
        }
        rows
    }

    /// Draws a panel header: `title` (if any) and a centred legend row (if any entries), and
    /// returns the area below it, so a legend never covers data.
    pub fn header<DB: DrawingBackend>(
        area: &DrawingArea<DB, Shift>,
        title: &str,
        title_size: f64,
        entries: &[LegendEntry],
        map: &dyn Fn(String) -> Error,
    ) -> Result<DrawingArea<DB, Shift>> {
        let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
        let (w, _) = area.dim_in_pixel();
        let title_h = if title.is_empty() {
            6
        } else {
            title_size as u32 + 14
        };
        let rows = if entries.is_empty() {
            Vec::new()
        } else {
            legend_rows(entries, w as i32 - 40)
        };
        let h = title_h + LEGEND_ROW * rows.len() as u32;
        let (top, rest) = area.split_vertically(h);
        if !title.is_empty() {
            top.draw(&Text::new(
                title.to_string(),
                (w as i32 / 2, 8),
                text(title_size, INK).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(m)?;
        }
        for (r, row) in rows.iter().enumerate() {
            let row_w = row
                .last()
                .map(|&(i, x)| x + text_size(&entries[i].name, style::TICK_SIZE).0 as i32 + 26)
                .unwrap_or(0);
            let x0 = (w as i32 - row_w) / 2;
            let y = title_h as i32 + r as i32 * LEGEND_ROW as i32 + LEGEND_ROW as i32 / 2;
            for &(i, x) in row {
                let e = &entries[i];
                let x = x0 + x;
                match e.marker {
                    Marker::Line => top.draw(&PathElement::new(
                        vec![(x, y), (x + 20, y)],
                        e.color.stroke_width(3),
                    )),
                    Marker::Square => top.draw(&Rectangle::new(
                        [(x + 3, y - 7), (x + 17, y + 7)],
                        e.color.filled(),
                    )),
                    Marker::Dot => top.draw(&Circle::new((x + 10, y), 5, e.color.filled())),
                }
                .map_err(m)?;
                top.draw(&Text::new(
                    e.name.clone(),
                    (x + 26, y),
                    text(style::TICK_SIZE, INK).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(m)?;
            }
        }
        Ok(rest)
    }

    /// Draws a vertical colour bar for `scale` in `area` (a strip right of a plot), labelled
    /// `label` (rotated, at the right); `top` and `bottom` are the margins that align it with
    /// the plot beside it.
    pub fn colorbar<DB: DrawingBackend>(
        area: &DrawingArea<DB, Shift>,
        scale: &ColorScale,
        label: &str,
        top: u32,
        bottom: u32,
        map: &dyn Fn(String) -> Error,
    ) -> Result<()> {
        let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
        let (w, h) = area.dim_in_pixel();
        let (y0, y1) = (top as i32, h as i32 - bottom as i32);
        if y1 - y0 < 20 {
            return Ok(());
        }
        let (x0, x1) = (8, 30);
        let (lo, hi) = if scale.hi > scale.lo {
            (scale.lo, scale.hi)
        } else {
            (scale.lo - 0.5, scale.hi + 0.5)
        };
        let to_px = |u: f64| y1 - ((u - lo) / (hi - lo) * (y1 - y0) as f64).round() as i32;
        for py in y0..y1 {
            let u = lo + (y1 - py) as f64 / (y1 - y0) as f64 * (hi - lo);
            let t = if scale.hi > scale.lo {
                (u - scale.lo) / (scale.hi - scale.lo)
            } else {
                0.5
            };
            area.draw(&Rectangle::new(
                [(x0, py), (x1, py + 1)],
                style::viridis(t).filled(),
            ))
            .map_err(m)?;
        }
        area.draw(&Rectangle::new([(x0, y0), (x1, y1)], INK.stroke_width(1)))
            .map_err(m)?;
        let axis = Axis::fixed(lo, hi, scale.log, 6);
        use plotters::coord::ranged1d::{Ranged, ValueFormatter};
        for t in axis.key_points(8usize) {
            let py = to_px(t);
            area.draw(&PathElement::new(
                vec![(x1, py), (x1 + 5, py)],
                INK.stroke_width(1),
            ))
            .map_err(m)?;
            area.draw(&Text::new(
                axis.format_ext(&t),
                (x1 + 8, py),
                text(style::TICK_SIZE, INK).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(m)?;
        }
        if !label.is_empty() {
            area.draw(&Text::new(
                label.to_string(),
                (w as i32 - 14, (y0 + y1) / 2),
                text(style::LABEL_SIZE, INK)
                    .transform(FontTransform::Rotate90)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(m)?;
        }
        Ok(())
    }
}
