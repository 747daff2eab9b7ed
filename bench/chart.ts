/**
 * Renders the results as one SVG: a small grouped-bar chart per workload, throughput (ops/s) by
 * concurrency, one bar per variant. Standalone: `npx tsx bench/chart.ts results.json out.svg`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResults } from './run.js';
import type { WorkloadName } from './workloads.js';

const COLORS = ['#1f77b4', '#7f7f7f', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];
const PANEL_WIDTH = 360;
const PANEL_HEIGHT = 230;
const COLUMNS = 3;
const MARGIN = { top: 34, right: 12, bottom: 30, left: 52 };
const LEGEND_HEIGHT = 56;

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A "nice" axis maximum and step above `value`: steps of 1, 2 or 5 × 10^k, at most 6 of them. */
function niceScale(value: number): { max: number; step: number } {
  if (value <= 0) return { max: 1, step: 1 };
  for (let magnitude = 10 ** Math.floor(Math.log10(value / 6)); ; magnitude *= 10) {
    for (const factor of [1, 2, 5]) {
      const step = factor * magnitude;
      if (Math.ceil(value / step) <= 6) return { max: Math.ceil(value / step) * step, step };
    }
  }
}

function formatCount(value: number): string {
  if (value >= 1000) return `${Number((value / 1000).toFixed(1))}k`;
  return String(Math.round(value));
}

/** Panel titles short enough for a 360 px panel. */
const SHORT_TITLES: Record<WorkloadName, string> = {
  select1: 'SELECT 1',
  point: 'point select by primary key',
  readonly: 'read-only list query (10 rows)',
  write: 'write transaction (INSERT + UPDATE)',
  mix: 'mix: 70% point, 20% list, 10% write',
};

/** The SVG document for `results` (cells of every workload it holds). */
export function renderChart(results: BenchResults): string {
  const workloads = results.settings.workloads.filter((w) => results.cells.some((c) => c.workload === w)) as WorkloadName[];
  const variants = results.settings.variants;
  const labels = new Map(results.cells.map((c) => [c.variant, c.label]));
  const concurrency = results.settings.concurrency;
  const rows = Math.ceil(workloads.length / COLUMNS);
  const width = PANEL_WIDTH * Math.min(COLUMNS, workloads.length);
  // Legend items left to right, wrapping onto a new line when the next one would not fit.
  const legend: { x: number; y: number; label: string; color: string }[] = [];
  let x = 10;
  let y = 30;
  variants.forEach((variant, i) => {
    const label = labels.get(variant) ?? variant;
    const itemWidth = 30 + label.length * 6.6;
    if (x > 10 && x + itemWidth > width) {
      x = 10;
      y += 18;
    }
    legend.push({ x, y, label, color: COLORS[i % COLORS.length]! });
    x += itemWidth;
  });
  const legendHeight = LEGEND_HEIGHT + (y - 30);
  const height = legendHeight + rows * PANEL_HEIGHT;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(
    `<text x="10" y="18" font-size="14" font-weight="bold">Throughput (ops/s, median of ${results.settings.rounds} rounds × ${results.settings.seconds} s) by concurrency — pool max ${results.settings.poolMax}</text>`,
  );
  for (const item of legend) {
    out.push(`<rect x="${item.x.toFixed(1)}" y="${item.y}" width="12" height="12" fill="${item.color}"/>`);
    out.push(`<text x="${(item.x + 16).toFixed(1)}" y="${item.y + 10}">${escapeXml(item.label)}</text>`);
  }
  workloads.forEach((workload, index) => {
    const px = (index % COLUMNS) * PANEL_WIDTH;
    const py = legendHeight + Math.floor(index / COLUMNS) * PANEL_HEIGHT;
    const plotWidth = PANEL_WIDTH - MARGIN.left - MARGIN.right;
    const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
    const cells = results.cells.filter((c) => c.workload === workload);
    const { max, step } = niceScale(Math.max(...cells.map((c) => c.opsPerSec)));
    const left = px + MARGIN.left;
    const top = py + MARGIN.top;
    const y = (value: number) => top + plotHeight - (value / max) * plotHeight;
    out.push(
      `<text x="${px + MARGIN.left}" y="${py + 20}" font-size="12" font-weight="bold">${escapeXml(SHORT_TITLES[workload])}</text>`,
    );
    for (let tick = 0; tick <= max + step / 2; tick += step) {
      out.push(
        `<line x1="${left}" x2="${left + plotWidth}" y1="${y(tick).toFixed(1)}" y2="${y(tick).toFixed(1)}" stroke="#e5e5e5"/>`,
      );
      out.push(`<text x="${left - 4}" y="${(y(tick) + 4).toFixed(1)}" text-anchor="end" fill="#555">${formatCount(tick)}</text>`);
    }
    const groupWidth = plotWidth / concurrency.length;
    const barWidth = (groupWidth * 0.8) / variants.length;
    concurrency.forEach((c, gi) => {
      const groupLeft = left + gi * groupWidth + groupWidth * 0.1;
      variants.forEach((variant, vi) => {
        const cell = cells.find((cc) => cc.concurrency === c && cc.variant === variant);
        if (!cell) return;
        const barTop = y(cell.opsPerSec);
        const barHeight = Math.max(0.5, top + plotHeight - barTop);
        out.push(
          `<rect x="${(groupLeft + vi * barWidth).toFixed(1)}" y="${(top + plotHeight - barHeight).toFixed(1)}" width="${(barWidth - 1).toFixed(1)}" height="${barHeight.toFixed(1)}" fill="${COLORS[vi % COLORS.length]}"><title>${escapeXml(`${cell.label}, concurrency ${c}: ${cell.opsPerSec} ops/s, p50 ${cell.p50Millis} ms, p99 ${cell.p99Millis} ms`)}</title></rect>`,
        );
      });
      out.push(
        `<text x="${(left + gi * groupWidth + groupWidth / 2).toFixed(1)}" y="${top + plotHeight + 16}" text-anchor="middle" fill="#333">c=${c}</text>`,
      );
    });
    out.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${top + plotHeight}" y2="${top + plotHeight}" stroke="#333"/>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: tsx bench/chart.ts results.json out.svg');
    process.exit(2);
  }
  writeFileSync(output, renderChart(JSON.parse(readFileSync(input, 'utf8')) as BenchResults));
}
