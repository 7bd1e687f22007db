//! Tree diagrams (decision trees such as the MD tree), laid out top-down.

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{Chart, Size, common, describe};
use crate::{
    Error, Result,
    style::{self, INK},
};

/// A node: multi-line text (lines split at `\n`), an optional category (leaves are coloured by
/// it) and labelled edges to its children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeNode {
    /// The node's text, e.g. `"train error > 0.1?"` or `"temperature too high\n(n=23)"`.
    pub text: String,
    /// Category for colouring (and the legend), e.g. the diagnosis of a leaf.
    pub category: Option<String>,
    /// Edges to the children, drawn left to right.
    pub children: Vec<TreeEdge>,
}

/// An edge to a child, with its label (`"yes"`, `"no"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeEdge {
    /// Text written on the edge (may be empty).
    pub label: String,
    /// The child.
    pub child: TreeNode,
}

impl TreeNode {
    /// A leaf with `text`.
    pub fn leaf(text: impl Into<String>) -> Self {
        TreeNode {
            text: text.into(),
            ..Default::default()
        }
    }

    /// An inner node with `text` and `(edge label, child)` pairs.
    pub fn split(text: impl Into<String>, children: Vec<(String, TreeNode)>) -> Self {
        TreeNode {
            text: text.into(),
            category: None,
            children: children
                .into_iter()
                .map(|(label, child)| TreeEdge { label, child })
                .collect(),
        }
    }

    /// This node with `category`.
    pub fn with_category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }
}

/// A tree drawn top-down: leaves in order, each parent centred over its children, no two
/// subtrees overlapping; the canvas is sized to the tree unless `size` is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeDiagram {
    /// Title.
    pub title: String,
    /// The root.
    pub root: TreeNode,
    /// Title of the category legend (shown when some node has a category).
    pub legend_title: String,
    /// Picture size; `None` (recommended): fitted to the tree.
    pub size: Option<Size>,
}

const FONT: f64 = 14.0;
const LINE_H: i32 = 18;
const PAD_X: i32 = 10;
const PAD_Y: i32 = 7;
const GAP_X: i32 = 22;
const GAP_Y: i32 = 64;
const MARGIN: i32 = 24;
const TITLE_H: i32 = 44;
const LEGEND_H: i32 = 34;
/// Deeper trees are refused (a guard against runaway recursion).
const MAX_DEPTH: usize = 64;

struct Placed<'a> {
    node: &'a TreeNode,
    lines: Vec<&'a str>,
    w: i32,
    h: i32,
    depth: usize,
    cx: i32,
    parent: Option<(usize, &'a str)>,
}

struct Layout<'a> {
    nodes: Vec<Placed<'a>>,
    width: i32,
    level_y: Vec<i32>,
    level_h: Vec<i32>,
    categories: Vec<String>,
}

impl TreeDiagram {
    fn layout(&self) -> Result<Layout<'_>> {
        fn measure(n: &TreeNode) -> (Vec<&str>, i32, i32) {
            let lines: Vec<&str> = n.text.split('\n').collect();
            let w = lines
                .iter()
                .map(|l| common::text_size(l, FONT).0 as i32)
                .max()
                .unwrap_or(0)
                + 2 * PAD_X;
            let h = lines.len() as i32 * LINE_H + 2 * PAD_Y;
            (lines, w.max(40), h)
        }
        fn width(n: &TreeNode, depth: usize, chart: &str) -> Result<i32> {
            if depth > MAX_DEPTH {
                return Err(Error::InvalidChart {
                    chart: chart.to_string(),
                    reason: format!("tree deeper than {MAX_DEPTH} levels"),
                });
            }
            let own = measure(n).1;
            let mut kids = 0;
            for (k, e) in n.children.iter().enumerate() {
                kids += width(&e.child, depth + 1, chart)? + if k > 0 { GAP_X } else { 0 };
            }
            Ok(own.max(kids))
        }
        fn place<'a>(
            n: &'a TreeNode,
            left: i32,
            depth: usize,
            parent: Option<(usize, &'a str)>,
            out: &mut Vec<Placed<'a>>,
            chart: &str,
        ) -> Result<i32> {
            let sw = width(n, depth, chart)?;
            let (lines, w, h) = measure(n);
            let me = out.len();
            out.push(Placed {
                node: n,
                lines,
                w,
                h,
                depth,
                cx: 0,
                parent,
            });
            let cx = if n.children.is_empty() {
                left + sw / 2
            } else {
                let mut total = 0;
                for (k, e) in n.children.iter().enumerate() {
                    total += width(&e.child, depth + 1, chart)? + if k > 0 { GAP_X } else { 0 };
                }
                let mut x = left + (sw - total) / 2;
                let mut centres = Vec::new();
                for e in &n.children {
                    let cw = width(&e.child, depth + 1, chart)?;
                    centres.push(place(
                        &e.child,
                        x,
                        depth + 1,
                        Some((me, &e.label)),
                        out,
                        chart,
                    )?);
                    x += cw + GAP_X;
                }
                (centres[0] + centres[centres.len() - 1]) / 2
            };
            out[me].cx = cx;
            Ok(cx)
        }
        let chart = self.describe();
        let mut nodes = Vec::new();
        let width = width(&self.root, 0, &chart)?;
        place(&self.root, 0, 0, None, &mut nodes, &chart)?;
        let levels = nodes.iter().map(|p| p.depth).max().unwrap_or(0) + 1;
        let mut level_h = vec![0; levels];
        for p in &nodes {
            level_h[p.depth] = level_h[p.depth].max(p.h);
        }
        let mut level_y = Vec::with_capacity(levels);
        let mut y = if self.title.is_empty() {
            MARGIN
        } else {
            TITLE_H + MARGIN / 2
        };
        for h in &level_h {
            level_y.push(y);
            y += h + GAP_Y;
        }
        let mut categories: Vec<String> = Vec::new();
        for p in &nodes {
            if let Some(c) = &p.node.category
                && !categories.contains(c)
            {
                categories.push(c.clone());
            }
        }
        Ok(Layout {
            nodes,
            width,
            level_y,
            level_h,
            categories,
        })
    }
}

impl Chart for TreeDiagram {
    fn describe(&self) -> String {
        describe("tree diagram", &self.title)
    }

    fn size(&self) -> Result<Size> {
        if let Some(s) = self.size {
            return Ok(s);
        }
        let l = self.layout()?;
        let title_w = common::text_size(&self.title, style::TITLE_SIZE).0 as i32;
        let legend_w: i32 = l
            .categories
            .iter()
            .map(|c| common::text_size(c, FONT).0 as i32 + 40)
            .sum::<i32>()
            + common::text_size(&self.legend_title, FONT).0 as i32
            + 20;
        let w = (l.width + 2 * MARGIN)
            .max(title_w + 2 * MARGIN)
            .max(legend_w.min(2400))
            .max(320);
        let last = l.level_y.len() - 1;
        let mut h = l.level_y[last] + l.level_h[last] + MARGIN;
        if !l.categories.is_empty() {
            h += LEGEND_H * legend_rows(&l.categories, w) as i32;
        }
        Ok(Size::new(w.max(1) as u32, h.max(1) as u32))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let chart = self.describe();
        if self.root.text.is_empty() && self.root.children.is_empty() {
            return Err(Error::NothingToDraw {
                chart,
                reason: "the tree is a single node without text".into(),
            });
        }
        let map = |reason: String| Error::Draw {
            chart: chart.clone(),
            reason,
        };
        let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
        let l = self.layout()?;
        area.fill(&WHITE).map_err(m)?;
        let (w, h) = area.dim_in_pixel();
        let x_off = (w as i32 - l.width) / 2;
        if !self.title.is_empty() {
            area.draw(&Text::new(
                self.title.clone(),
                (w as i32 / 2, MARGIN / 2),
                common::text(style::TITLE_SIZE, INK).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(m)?;
        }
        let cat_color = |c: &Option<String>| {
            c.as_ref()
                .and_then(|c| l.categories.iter().position(|k| k == c))
                .map(style::series_color)
        };
        // Box corners of node k.
        let rect = |k: usize| {
            let p = &l.nodes[k];
            let top = l.level_y[p.depth] + (l.level_h[p.depth] - p.h) / 2;
            let x = x_off + p.cx - p.w / 2;
            ((x, top), (x + p.w, top + p.h))
        };
        // Edges first, then boxes over them, then edge labels.
        let edge_style = RGBColor(0x70, 0x70, 0x70).stroke_width(2);
        for k in 0..l.nodes.len() {
            if let Some((parent, _)) = l.nodes[k].parent {
                let (a, b) = (rect(parent), rect(k));
                let from = ((a.0.0 + a.1.0) / 2, a.1.1);
                let to = ((b.0.0 + b.1.0) / 2, b.0.1);
                area.draw(&PathElement::new(vec![from, to], edge_style))
                    .map_err(m)?;
            }
        }
        for (k, p) in l.nodes.iter().enumerate() {
            let (a, b) = rect(k);
            let leaf = p.node.children.is_empty();
            let (fill, border) = match cat_color(&p.node.category) {
                Some(c) => (c.mix(0.22), c.stroke_width(2)),
                None if leaf => (RGBColor(0xF2, 0xF2, 0xF2).mix(1.0), INK.stroke_width(1)),
                None => (WHITE.mix(1.0), INK.stroke_width(1)),
            };
            area.draw(&Rectangle::new([a, b], WHITE.filled()))
                .map_err(m)?;
            area.draw(&Rectangle::new([a, b], fill.filled()))
                .map_err(m)?;
            area.draw(&Rectangle::new([a, b], border)).map_err(m)?;
            let cx = (a.0 + b.0) / 2;
            for (i, line) in p.lines.iter().enumerate() {
                area.draw(&Text::new(
                    line.to_string(),
                    (cx, a.1 + PAD_Y + i as i32 * LINE_H + LINE_H / 2),
                    common::text(FONT, INK).pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(m)?;
            }
        }
        for k in 0..l.nodes.len() {
            if let Some((parent, label)) = l.nodes[k].parent {
                if label.is_empty() {
                    continue;
                }
                let (a, b) = (rect(parent), rect(k));
                let from = ((a.0.0 + a.1.0) / 2, a.1.1);
                let to = ((b.0.0 + b.1.0) / 2, b.0.1);
                let mid = ((from.0 + to.0) / 2, (from.1 + to.1) / 2);
                common::boxed_text(
                    area,
                    label,
                    mid,
                    FONT - 1.0,
                    Pos::new(HPos::Center, VPos::Center),
                    &map,
                )?;
            }
        }
        // Legend of categories along the bottom.
        if !l.categories.is_empty() {
            let rows = legend_rows(&l.categories, w as i32);
            let mut y = h as i32 - LEGEND_H * rows as i32 - MARGIN / 2 + LEGEND_H / 2;
            let mut x = MARGIN;
            if !self.legend_title.is_empty() {
                area.draw(&Text::new(
                    format!("{}:", self.legend_title),
                    (x, y),
                    common::text(FONT, INK).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(m)?;
                x += common::text_size(&self.legend_title, FONT).0 as i32 + 20;
            }
            for (i, c) in l.categories.iter().enumerate() {
                let tw = common::text_size(c, FONT).0 as i32;
                if x + tw + 30 > w as i32 - MARGIN && x > MARGIN {
                    x = MARGIN;
                    y += LEGEND_H;
                }
                let color = style::series_color(i);
                area.draw(&Rectangle::new(
                    [(x, y - 7), (x + 14, y + 7)],
                    color.mix(0.5).filled(),
                ))
                .map_err(m)?;
                area.draw(&Rectangle::new(
                    [(x, y - 7), (x + 14, y + 7)],
                    color.stroke_width(2),
                ))
                .map_err(m)?;
                area.draw(&Text::new(
                    c.clone(),
                    (x + 20, y),
                    common::text(FONT, INK).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(m)?;
                x += tw + 44;
            }
        }
        Ok(())
    }
}

/// Rows the category legend needs at width `w` (a rough count; the legend title shares row 1).
fn legend_rows(categories: &[String], w: i32) -> usize {
    let mut rows = 1;
    let mut x = MARGIN + 120;
    for c in categories {
        let tw = common::text_size(c, FONT).0 as i32 + 44;
        if x + tw > w - MARGIN && x > MARGIN {
            rows += 1;
            x = MARGIN;
        }
        x += tw;
    }
    rows
}
