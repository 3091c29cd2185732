/**
 * Reading the project's Markdown as GitHub and GitLab render it: headings and
 * their anchors, links, and the shell lines of code blocks. Code (fenced or
 * inline) is never read as prose, so a `[x](y)` inside it is not a link.
 */

export interface Block {
  lang: string;
  text: string;
}

/** The fenced code blocks of a document, in order. */
export function codeBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  let open: { lang: string; lines: string[] } | null = null;
  for (const line of markdown.split("\n")) {
    const fence = /^\s*```\s*([\w-]*)/.exec(line);
    if (fence && !open) open = { lang: fence[1] ?? "", lines: [] };
    else if (fence && open) {
      blocks.push({ lang: open.lang, text: open.lines.join("\n") });
      open = null;
    } else if (open) open.lines.push(line);
  }
  return blocks;
}

/** The document without its fenced blocks and inline code spans. */
export function prose(markdown: string): string {
  const out: string[] = [];
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) {
      inFence = !inFence;
      continue;
    }
    if (!inFence) out.push(line.replace(/`[^`]*`/g, "``"));
  }
  return out.join("\n");
}

/** GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

/** Every heading's anchor, with GitHub's -1, -2 … for repeats. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const heading of headingTexts(markdown)) {
    const base = slug(heading.replace(/`/g, ""));
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

/** Every link target in the prose: `[text](target)`. */
export function links(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!);
}

/** The headings' text, inline code kept, as a reader sees it. */
export function headingTexts(markdown: string): string[] {
  const out: string[] = [];
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) inFence = !inFence;
    else if (!inFence) {
      const m = /^#{1,6}\s+(.*?)\s*$/.exec(line);
      if (m) out.push(m[1]!);
    }
  }
  return out;
}

/** The body of the section under a heading (up to the next heading of the same or a higher level). */
export function section(markdown: string, heading: string): string {
  const lines = markdown.split("\n");
  let inFence = false;
  const levels = lines.map((l) => {
    if (/^\s*```/.test(l)) inFence = !inFence;
    const m = inFence ? null : /^(#{1,6})\s+(.*?)\s*$/.exec(l);
    return m ? { level: m[1]!.length, text: m[2]! } : null;
  });
  const start = levels.findIndex((h) => h?.text === heading);
  if (start < 0) throw new Error(`no section "${heading}"`);
  const level = levels[start]!.level;
  const end = levels.findIndex((h, i) => i > start && h !== null && h.level <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** The first cell of every row of the Markdown tables in a text (header and rule rows dropped). */
export function firstCells(text: string): string[] {
  const lines = text.split("\n");
  const rule = (l: string | undefined) => l !== undefined && /^\|\s*:?-/.test(l);
  return lines
    .filter((l, i) => l.startsWith("|") && !rule(l) && !rule(lines[i + 1]))
    .map((l) => l.split("|")[1]!.trim());
}

/**
 * A shell command's words, as sh splits them: quotes group and are removed,
 * a backslash-newline joins lines, `$(…)` stays one word. Enough for the
 * documentation's example lines; nothing is expanded.
 */
export function shellWords(command: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  const s = command.replace(/\\\n/g, " ");
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "'" || c === '"') {
      const end = s.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unclosed ${c} in: ${command}`);
      word += s.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === "$" && s[i + 1] === "(") {
      let depth = 0;
      let j = i + 1;
      for (; j < s.length; j++) {
        if (s[j] === "(") depth++;
        else if (s[j] === ")" && --depth === 0) break;
      }
      word += s.slice(i, j + 1);
      inWord = true;
      i = j;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (c === "#" && !inWord) break;
    else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Every `dagger call …` command in a document's shell blocks, continuation lines joined. */
export function daggerCalls(markdown: string): string[] {
  const calls: string[] = [];
  for (const block of codeBlocks(markdown).filter((b) => ["sh", "bash", "shell", ""].includes(b.lang))) {
    const joined = block.text.replace(/\\\n/g, " ");
    for (const line of joined.split("\n")) {
      const at = line.indexOf("dagger call ");
      if (at >= 0 && !line.trimStart().startsWith("#")) calls.push(line.slice(at).split(/\s(?:&&|\|\||;|\|)\s/)[0]!);
    }
  }
  return calls;
}
