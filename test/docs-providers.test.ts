import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { repoRoot } from '@relay/testkit';
import { describe, expect, it } from 'vitest';

// docs/credentials.md is the index of the provider pages; their links must lead somewhere.

const pages = readdirSync(join(repoRoot, 'docs/providers'))
  .filter((f) => f.endsWith('.md'))
  .map((f) => `docs/providers/${f}`);

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

const anchors = (file: string) =>
  new Set(
    readFileSync(join(repoRoot, file), 'utf8')
      .split('\n')
      .filter((l) => /^#{1,6} /.test(l))
      .map((l) => slug(l.replace(/^#+ /, ''))),
  );

describe('provider pages', () => {
  it('are each linked from docs/credentials.md', () => {
    const index = readFileSync(join(repoRoot, 'docs/credentials.md'), 'utf8');
    expect(pages).toEqual(expect.arrayContaining(['docs/providers/microsoft365.md', 'docs/providers/google.md']));
    for (const page of pages) expect(index).toContain(`](${page.slice('docs/'.length)})`);
  });

  it.each([...pages, 'docs/credentials.md'])('%s links only to files and headings that exist', (file) => {
    const text = readFileSync(join(repoRoot, file), 'utf8');
    const links = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) {
      const [path, anchor] = link.split('#') as [string, string | undefined];
      const target = path ? normalize(join(dirname(file), path)) : file;
      expect(existsSync(join(repoRoot, target)), `${file}: ${link}`).toBe(true);
      if (anchor && target.endsWith('.md')) expect(anchors(target).has(anchor), `${file}: ${link}`).toBe(true);
    }
  });
});
