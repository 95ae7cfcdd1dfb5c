// The warnings banner's headline, worded by what the warnings are: the backends name a record
// (or summary, or artifact) they had to leave out "skipped ..."; everything else (different class
// names in a comparison, missing neighbour images, a fallback that still shows the data) is a
// plain warning, and must not be counted as data that could not be shown.
const NOT_SHOWN = /\bskipped\b/i;
// "skipped X ...; reading ... instead": the data is still shown, read another way.
const STILL_SHOWN = /\binstead\b/i;

export function isNotShown(warning: string): boolean {
  return NOT_SHOWN.test(warning) && !STILL_SHOWN.test(warning);
}

export function warningsSummary(warnings: readonly string[]): string {
  const notShown = warnings.filter(isNotShown).length;
  const other = warnings.length - notShown;
  const parts: string[] = [];
  if (notShown) parts.push(`${notShown} record${notShown > 1 ? "s" : ""} could not be shown`);
  if (other) parts.push(`${other} ${notShown ? "other " : ""}warning${other > 1 ? "s" : ""}`);
  return parts.join(" · ");
}
