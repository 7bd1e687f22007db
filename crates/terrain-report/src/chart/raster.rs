//! The bitmap backend used for PNG: plotters' `BitMapBackend` with its text drawing replaced.
//!
//! plotters 0.3.7 places each ab_glyph glyph at the pen position without the glyph's own
//! left bearing, so letters sit unevenly ("ep och"). This wrapper forwards every drawing call
//! to the bitmap backend except `draw_text`, which lays out and rasterises the embedded font
//! itself (same advance widths, kerning, anchors and rotations as plotters, so layout computed
//! through plotters' text-size estimates still fits). SVG output is unaffected (its text is
//! drawn by the viewer).

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::prelude::{BitMapBackend, DrawingBackend};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
    text_anchor::{HPos, VPos},
};

use crate::style;

/// A `BitMapBackend` whose text is drawn with the embedded font, glyphs placed correctly.
pub(crate) struct Crisp<'a>(pub BitMapBackend<'a>);

type Err<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for Crisp<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Err<'a>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Err<'a>> {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Err<'a>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), Err<'a>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), Err<'a>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let Some(font) = font() else {
            // Cannot happen (the font is compiled in); fall back to plotters' own drawing.
            return fallback(self, text, style, pos);
        };
        let size = style.size() as f32;
        let scaled = font.as_scaled(PxScale::from(size));
        // The layout box as plotters estimates it: advance widths with kerning, height
        // size / 1.24.
        let mut pen = 0f32;
        let mut prev = None;
        let mut glyphs = Vec::with_capacity(text.len());
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            glyphs.push((id, pen));
            pen += scaled.h_advance(id);
            prev = Some(id);
        }
        let width = pen as i32;
        let height = (size as f64 / 1.24) as i32;
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        // Baseline: capital letters centred in the layout box.
        let cap = scaled
            .outline_glyph(
                scaled
                    .glyph_id('H')
                    .with_scale_and_position(size, point(0.0, 0.0)),
            )
            .map(|g| -g.px_bounds().min.y)
            .unwrap_or(size * 0.63);
        let baseline = (height as f32 + cap) / 2.0;
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut pixels = Vec::new();
        for (id, x) in glyphs {
            let glyph = id.with_scale_and_position(size, point(x, baseline));
            if let Some(outlined) = scaled.outline_glyph(glyph) {
                let b = outlined.px_bounds();
                outlined.draw(|gx, gy, coverage| {
                    if coverage > 0.0 {
                        pixels.push((
                            b.min.x as i32 + gx as i32,
                            b.min.y as i32 + gy as i32,
                            coverage,
                        ));
                    }
                });
            }
        }
        for (x, y, coverage) in pixels {
            let (x, y) = trans.transform(x + dx, y + dy);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                self.0.draw_pixel(
                    (x, y),
                    BackendColor {
                        alpha: color.alpha * coverage.min(1.0) as f64,
                        rgb: color.rgb,
                    },
                )?;
            }
        }
        Ok(())
    }
}

fn font() -> Option<FontRef<'static>> {
    FontRef::try_from_slice(style::FONT_BYTES).ok()
}

fn fallback<'a, S: BackendTextStyle>(
    b: &mut Crisp<'a>,
    text: &str,
    style: &S,
    pos: BackendCoord,
) -> Result<(), Err<'a>> {
    b.0.draw_text(text, style, pos)
}
