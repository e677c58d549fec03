//! Small SVG plots written next to results (no plotting library needed for a line or a bar chart).

use crate::training::Epoch;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Training and validation loss per epoch, plus validation exact top-1 on a second axis.
pub fn training_curve(history: &[Epoch], name: &str, simulated: bool) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 60.0, 60.0, 40.0, 40.0);
    let max_loss = history
        .iter()
        .flat_map(|e| [e.train_loss, e.valid_loss])
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-9);
    let n = history.len().max(2) as f64 - 1.0;
    let x = |i: usize| left + (w - left - right) * i as f64 / n;
    let y_loss = |v: f64| top + (h - top - bottom) * (1.0 - v / max_loss);
    let y_acc = |v: f64| top + (h - top - bottom) * (1.0 - v);
    let line = |f: &dyn Fn(&Epoch) -> f64, y: &dyn Fn(f64) -> f64| {
        history.iter().enumerate().map(|(i, e)| format!("{:.1},{:.1}", x(i), y(f(e)))).collect::<Vec<_>>().join(" ")
    };
    let title = format!("{}{} — training curve", if simulated { "[SIMULATED data] " } else { "" }, esc(name));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="22" font-size="14">{title}</text>
<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#444"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="#444"/>
<line x1="{r}" y1="{top}" x2="{r}" y2="{b}" stroke="#444"/>
<text x="{left}" y="{bl}">epoch 1</text><text x="{r}" y="{bl}" text-anchor="end">epoch {last}</text>
<text x="8" y="{top}">loss {max_loss:.2}</text><text x="8" y="{b}">0</text>
<text x="{rt}" y="{top}">top-1 1.0</text><text x="{rt}" y="{b}">0</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{train}"/>
<polyline fill="none" stroke="#ff7f0e" stroke-width="2" points="{valid}"/>
<polyline fill="none" stroke="#2ca02c" stroke-width="2" stroke-dasharray="5,3" points="{acc}"/>
<text x="{lx}" y="{ly1}" fill="#1f77b4">train loss</text><text x="{lx}" y="{ly2}" fill="#ff7f0e">validation loss</text>
<text x="{lx}" y="{ly3}" fill="#2ca02c">validation exact top-1</text>
</svg>
"##,
        b = h - bottom,
        r = w - right,
        bl = h - bottom + 16.0,
        rt = w - right + 4.0,
        last = history.len(),
        train = line(&|e| e.train_loss, &y_loss),
        valid = line(&|e| e.valid_loss, &y_loss),
        acc = line(&|e| e.valid_top1, &y_acc),
        lx = left + 10.0,
        ly1 = top + 16.0,
        ly2 = top + 32.0,
        ly3 = top + 48.0,
    )
}
