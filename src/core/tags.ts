/**
 * Tags, exactly as the seed guide names them:
 *   <version>-<flavor>-<slug>-<sha8>   every build of a branch
 *   <version>-<flavor>-<slug>-latest   moves with the branch
 *   <version>-<flavor>-latest          production, default branch only (promotion)
 */

/** OCI distribution's tag grammar. */
export const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export class TagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TagError";
  }
}

/**
 * GitLab's CI_COMMIT_REF_SLUG, to the letter: lowercase, every character
 * outside a-z and 0-9 becomes "-" (no collapsing), cut to 63 characters,
 * leading and trailing "-" stripped. Different refs can share a slug.
 */
export function refSlug(ref: string): string {
  return ref
    .toLowerCase()
    .replace(/[^a-z0-9]/gu, "-")
    .slice(0, 63)
    .replace(/^-+|-+$/g, "");
}

/** CI_COMMIT_SHORT_SHA: the first 8 hex characters of the commit, lowercased. */
export function sha8(sha: string): string {
  if (!/^[0-9a-fA-F]{8,64}$/.test(sha)) {
    throw new TagError(
      `invalid commit sha ${JSON.stringify(sha)}: expected 8 to 64 hexadecimal characters (a git commit id)`,
    );
  }
  return sha.slice(0, 8).toLowerCase();
}

function checked(tag: string): string {
  if (!TAG_PATTERN.test(tag)) {
    throw new TagError(`tag ${JSON.stringify(tag)} is outside OCI's tag grammar [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  return tag;
}

export interface BranchTags {
  /** `<version>-<flavor>-<slug>-<sha8>`: pushed once per image. */
  readonly commit: string;
  /** `<version>-<flavor>-<slug>-latest`: set to the commit tag's digest. */
  readonly branchLatest: string;
  /** `<version>-<flavor>-latest`: moved on the default branch only, after every image is checked. */
  readonly production: string | null;
}

export interface TagInput {
  /** Slurm release line, e.g. 25.11. */
  readonly line: string;
  readonly flavor: string;
  readonly branch: string;
  readonly sha: string;
  readonly defaultBranch: string;
}

/** The tags one run sets, for every image alike. */
export function branchTags({ line, flavor, branch, sha, defaultBranch }: TagInput): BranchTags {
  const slug = refSlug(branch);
  if (slug === "") {
    throw new TagError(
      `branch ${JSON.stringify(branch)} has an empty slug: a branch name needs at least one letter or digit`,
    );
  }
  const short = sha8(sha);
  return {
    commit: checked(`${line}-${flavor}-${slug}-${short}`),
    branchLatest: checked(`${line}-${flavor}-${slug}-latest`),
    production: branch === defaultBranch ? checked(`${line}-${flavor}-latest`) : null,
  };
}
