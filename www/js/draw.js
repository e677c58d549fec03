// One drawing interface, two targets: a canvas on screen and SVG for export. Views draw a scene
// once against it (rect, line, text), so the exported picture is the one on screen.
import { esc } from "./dom.js";

export function canvasOut(ctx) {
  return {
    rect: (x, y, w, h, fill, stroke) => { if (fill !== "none") { ctx.fillStyle = fill; ctx.fillRect(x, y, w, h); } if (stroke) { ctx.strokeStyle = stroke; ctx.strokeRect(x, y, w, h); } },
    line: (x1, y1, x2, y2, color, width) => { ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke(); },
    text: (x, y, s, color, size, angle = 0) => {
      ctx.save(); ctx.translate(x, y); ctx.rotate((angle * Math.PI) / 180);
      ctx.fillStyle = color; ctx.font = `${size}px sans-serif`; ctx.fillText(s, 0, 0); ctx.restore();
    },
  };
}

export function svgOut(parts) {
  return {
    rect: (x, y, w, h, fill, stroke) => parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(2)}" height="${h.toFixed(1)}" fill="${fill}"${stroke ? ` stroke="${stroke}"` : ""}/>`),
    line: (x1, y1, x2, y2, color, width) => parts.push(`<line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" stroke="${color}" stroke-width="${width}"/>`),
    text: (x, y, s, color, size, angle = 0) => parts.push(`<text transform="translate(${x.toFixed(1)},${y.toFixed(1)}) rotate(${angle})" fill="${color}" font-size="${size}" font-family="sans-serif">${esc(s)}</text>`),
  };
}

/** The SVG file of a scene drawn at the canvas's size. */
export function svgFile(canvas, draw) {
  const parts = [];
  draw(svgOut(parts), canvas.width, canvas.height);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${canvas.width}" height="${canvas.height}">${parts.join("")}</svg>`;
}
