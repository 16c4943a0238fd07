// Text of the dashboard status line, from the numbers the kernel sends.

function compact(x) {
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toPrecision(2);
}

// "1 sample", "2 samples"; `plural` for words that do not just take an s ("analysis").
export function count(n, singular, plural = `${singular}s`) {
  return `${n} ${n === 1 ? singular : plural}`;
}

export function statusText(s) {
  const parts = [`step ${s.step}`];
  if (s.steps_per_second != null) parts.push(`${compact(s.steps_per_second)} steps/s`);
  if (s.slowdown != null) {   // measured by the monitor: monitored / bare step time - 1
    parts.push(`slowdown ${(100 * s.slowdown).toFixed(1)}% (budget ${(100 * s.budget).toFixed(0)}%)`);
  }
  parts.push(count(s.samples, "sample"));
  if (s.every_within_budget != null && s.own_share != null) {   // the budget cannot pace sampling
    const every = s.every === 1 ? "every step" : `every ${s.every} steps`;
    parts.push(`sampling ${every} takes ${(100 * s.own_share).toFixed(1)}%: `
      + `every=${s.every_within_budget} leaves half the budget to the analyses`);
  }
  if (s.dropped) parts.push(`${count(s.dropped, "analysis", "analyses")} dropped`);
  if (s.nonfinite && s.nonfinite.length) parts.push(`non-finite weights: ${s.nonfinite.join(", ")}`);
  if (s.errors) parts.push(`${count(s.errors, "error")}, last: ${s.last_error}`);
  if (s.replaced_at != null) parts.push(`replaced at step ${s.replaced_at} by a new monitor`);
  else if (s.detached) parts.push("detached");
  return parts.join(" · ");
}
