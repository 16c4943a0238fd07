// Text of the dashboard status line, from the numbers the kernel sends.

function compact(x) {
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toPrecision(2);
}

export function statusText(s) {
  const parts = [`step ${s.step}`];
  if (s.steps_per_second != null) parts.push(`${compact(s.steps_per_second)} steps/s`);
  if (s.overhead != null) {
    parts.push(`monitor ${(100 * s.overhead).toFixed(1)}% (budget ${(100 * s.budget).toFixed(0)}%)`);
  }
  parts.push(`${s.samples} samples`);
  if (s.dropped) parts.push(`${s.dropped} analyses dropped`);
  if (s.nonfinite && s.nonfinite.length) parts.push(`non-finite weights: ${s.nonfinite.join(", ")}`);
  if (s.errors) parts.push(`${s.errors} error${s.errors === 1 ? "" : "s"}, last: ${s.last_error}`);
  if (s.detached) parts.push("detached");
  return parts.join(" · ");
}
