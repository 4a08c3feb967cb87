// One PNG bar chart per workload of the browser benchmark (seconds, lower is better), drawn by
// Chromium. `node charts.mjs results/browser.json results/` draws them again from saved results.

import fs from "node:fs";
import path from "node:path";

import { chromium } from "playwright-core";

const ROW = 44;

export async function drawCharts(browser, results, dir) {
  fs.mkdirSync(dir, { recursive: true });
  const page = await browser.newPage({ viewport: { width: 640, height: 300 } });
  const workloads = [...new Set(results.points.map((point) => point.workload))];
  for (const workload of workloads) {
    const points = results.points.filter((point) => point.workload === workload);
    const slowest = Math.max(...points.filter((point) => !point.failed).map((point) => point.seconds));
    const rows = points
      .map((point, index) => {
        const y = 40 + index * ROW;
        const label = `<text x="10" y="${y + 20}" font-size="14">${point.library}</text>`;
        if (point.failed) return `${label}<text x="150" y="${y + 20}" font-size="13" fill="#b91c1c">${escape(point.failed.split("\n")[0].slice(0, 60))}</text>`;
        const width = (point.seconds / slowest) * 420;
        const color = point.library === "ferry" ? "#2563eb" : point.library === "demo page" ? "#60a5fa" : point.library.startsWith("raw") ? "#16a34a" : "#94a3b8";
        return `${label}<rect x="150" y="${y}" width="${width}" height="28" fill="${color}"/><text x="${158 + width}" y="${y + 20}" font-size="13">${point.seconds.toFixed(2)} s</text>`;
      })
      .join("");
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="${60 + points.length * ROW}" font-family="sans-serif"><text x="10" y="24" font-size="16" font-weight="bold">${escape(workload)}: seconds (lower is better)</text>${rows}</svg>`;
    await page.setContent(`<body style="margin:0;background:white">${svg}</body>`);
    const slug = workload.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").toLowerCase();
    await page.screenshot({ path: path.join(dir, `${slug}.png`), fullPage: true });
  }
  await page.close();
}

function escape(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;");
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const [resultsFile, dir] = process.argv.slice(2);
  if (!resultsFile || !dir) throw new Error("usage: node charts.mjs results/browser.json results/");
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
  await drawCharts(browser, JSON.parse(fs.readFileSync(resultsFile, "utf8")), dir);
  await browser.close();
}
