/**
 * Reading the project's Markdown as GitHub and GitLab render it: headings and
 * their anchors, links, and the shell lines of code blocks. Code (fenced or
 * inline) is never read as prose, so a `[x](y)` inside it is not a link.
 */

export interface Block {
  lang: string;
  text: string;
}

interface Line {
  text: string;
  /** A ``` line, opening or closing a block. */
  fence: boolean;
  /** A fence or a line between two. */
  code: boolean;
}

/** The document's lines, each knowing whether it belongs to a fenced code block. */
function lines(markdown: string): Line[] {
  let open = false;
  return markdown.split("\n").map((text) => {
    const fence = /^\s*```/.test(text);
    if (fence) open = !open;
    return { text, fence, code: fence || open };
  });
}

/** The fenced code blocks of a document, in order. */
export function codeBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  let open: { lang: string; lines: string[] } | null = null;
  for (const line of lines(markdown)) {
    if (line.fence && !open) open = { lang: /^\s*```\s*([\w-]*)/.exec(line.text)![1]!, lines: [] };
    else if (line.fence && open) {
      blocks.push({ lang: open.lang, text: open.lines.join("\n") });
      open = null;
    } else if (open) open.lines.push(line.text);
  }
  return blocks;
}

/** The document without its fenced blocks and inline code spans. */
export function prose(markdown: string): string {
  return lines(markdown)
    .filter((l) => !l.code)
    .map((l) => l.text.replace(/`[^`]*`/g, "``"))
    .join("\n");
}

/** The headings outside code blocks: their line, level and text (inline code kept, as a reader sees it). */
function headings(markdown: string): { index: number; level: number; text: string }[] {
  return lines(markdown).flatMap((l, index) => {
    const m = l.code ? null : /^(#{1,6})\s+(.*?)\s*$/.exec(l.text);
    return m ? [{ index, level: m[1]!.length, text: m[2]! }] : [];
  });
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
  for (const heading of headings(markdown)) {
    const base = slug(heading.text.replace(/`/g, ""));
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

/** The body of the section under a heading (up to the next heading of the same or a higher level). */
export function section(markdown: string, heading: string): string {
  const all = headings(markdown);
  const at = all.findIndex((h) => h.text === heading);
  if (at < 0) throw new Error(`no section "${heading}"`);
  const next = all.slice(at + 1).find((h) => h.level <= all[at]!.level);
  return markdown.split("\n").slice(all[at]!.index + 1, next?.index).join("\n");
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
