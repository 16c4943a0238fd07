// Text of the dashboard's status header, from the numbers the kernel sends, in plain words.

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
  const every = s.every === 1 ? "every step" : `every ${s.every} steps`;
  parts.push(`${count(s.samples, "sample")}, ${every}`);
  if (s.every_within_budget != null && s.own_share != null) {   // the budget cannot pace sampling
    parts.push(`sampling ${every} takes ${(100 * s.own_share).toFixed(1)}%: `
      + `every=${s.every_within_budget} leaves half the budget to the analyses`);
  }
  if (s.nonfinite && s.nonfinite.length) parts.push(`non-finite weights: ${s.nonfinite.join(", ")}`);
  if (s.errors) parts.push(`${count(s.errors, "error")}, last: ${s.last_error}`);
  if (s.replaced_at != null) parts.push(`replaced at step ${s.replaced_at} by a new monitor`);
  else if (s.detached) parts.push("detached");
  return parts.join(" · ");
}

// How long ago, in plain words: "0.4 s", "12 s", "3 min", "2 h".
export function ageText(seconds) {
  if (!(seconds >= 0)) return "";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

// "trend 0.4 s ago · spectra 1.8 s ago": each panel's age, from `stamps` [[name, time of its
// newest frame in ms]] in the dashboard's order, at `now` (ms).
export function agesText(stamps, now) {
  return stamps.map(([name, t]) => `${name} ${ageText(Math.max(0, now - t) / 1000)} ago`).join(" · ");
}
