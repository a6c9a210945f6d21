/*
 * farm hook install|uninstall [--repo DIR] [--gate pre-push], and
 * farm hook gate REV [REF] (what the pre-push hook runs).
 *
 * farm's part of a hook file is one marked block; install replaces an
 * existing block (idempotent) or appends one, keeping the rest of the file;
 * uninstall removes the block and leaves the rest byte for byte.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"

#define BEGIN "# >>> farm hook >>>\n"
#define SHEBANG "#!/bin/sh\n"
/* The block of a hook file farm created: the shebang before it is farm's. */
#define BEGIN_NEW "# >>> farm hook (this file was created by farm) >>>\n"
#define END "# <<< farm hook <<<\n"

struct repo_info {
    char hooks[PATH_MAX * 2 + 16];
    int bare;
};

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Finds the hooks directory of the repository holding `dir`, the way git
 * does: DIR/.git (a directory, or a file naming the git dir), or DIR itself
 * when it is a bare repository; then the parent directories. */
static int find_repo(const char *dir, struct repo_info *ri)
{
    char cur[PATH_MAX], p[PATH_MAX + 64];
    if (!realpath(dir, cur)) {
        fprintf(stderr, "farm hook: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (;;) {
        char *slash;
        snprintf(p, sizeof p, "%s/.git", cur);
        if (is_dir(p)) {
            ri->bare = 0;
            snprintf(ri->hooks, sizeof ri->hooks, "%s/.git/hooks", cur);
            return 0;
        }
        if (access(p, R_OK) == 0) {
            char *text = NULL, *gd, common[PATH_MAX + 80], *ctext = NULL;
            if (farm_read_file(p, &text, NULL) == 0 && !strncmp(text, "gitdir: ", 8)) {
                gd = text + 8;
                gd[strcspn(gd, "\n")] = '\0';
                /* A linked work tree shares the hooks of its common dir. */
                snprintf(common, sizeof common, "%s/commondir", gd);
                if (farm_read_file(common, &ctext, NULL) == 0) {
                    ctext[strcspn(ctext, "\n")] = '\0';
                    if (ctext[0] == '/')
                        snprintf(ri->hooks, sizeof ri->hooks, "%s/hooks", ctext);
                    else
                        snprintf(ri->hooks, sizeof ri->hooks, "%s/%s/hooks", gd, ctext);
                    free(ctext);
                } else if (gd[0] == '/') {
                    snprintf(ri->hooks, sizeof ri->hooks, "%s/hooks", gd);
                } else {
                    snprintf(ri->hooks, sizeof ri->hooks, "%s/%s/hooks", cur, gd);
                }
                ri->bare = 0;
                free(text);
                return 0;
            }
            free(text);
        }
        snprintf(p, sizeof p, "%s/objects", cur);
        if (is_dir(p)) {
            snprintf(p, sizeof p, "%s/HEAD", cur);
            if (access(p, R_OK) == 0) {
                ri->bare = 1;
                snprintf(ri->hooks, sizeof ri->hooks, "%s/hooks", cur);
                return 0;
            }
        }
        slash = strrchr(cur, '/');
        if (!slash || slash == cur)
            break;
        *slash = '\0';
    }
    fprintf(stderr, "farm hook: %s: not a git repository\n", dir);
    return -1;
}

/* git's own answer for the hooks directory (it honours core.hooksPath, as
 * husky-style set-ups use): `git rev-parse --git-path hooks`, absolute. 0 and
 * the directory in `out`, or -1 when git cannot tell (not installed). */
static int git_hooks_dir(const char *dir, char *out, size_t len)
{
    int fds[2], st;
    pid_t pid;
    size_t got = 0;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(fds[1], STDOUT_FILENO);
        if (nul >= 0) {
            dup2(nul, STDIN_FILENO);
            dup2(nul, STDERR_FILENO);
        }
        execlp("git", "git", "-C", dir, "rev-parse", "--path-format=absolute", "--git-path",
               "hooks", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fds[0], out + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == len - 1)
            break;
    }
    close(fds[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    out[got] = '\0';
    out[strcspn(out, "\n")] = '\0';
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 && out[0] == '/' ? 0 : -1;
}

/* Whether a hook's text runs under a POSIX shell: no "#!" line, or one that
 * names sh, bash, dash, ksh, zsh or busybox (directly or through env). */
static int shell_hook(const char *text)
{
    static const char *const shells[] = {"sh", "bash", "dash", "ksh", "mksh", "zsh", "busybox"};
    char line[256], *word, *base;
    size_t n;
    if (strncmp(text, "#!", 2) != 0)
        return 1;
    n = strcspn(text + 2, "\n");
    if (n >= sizeof line)
        return 0;
    memcpy(line, text + 2, n);
    line[n] = '\0';
    word = strtok(line, " \t");
    if (!word)
        return 0;
    base = strrchr(word, '/') ? strrchr(word, '/') + 1 : word;
    if (!strcmp(base, "env")) {
        while ((word = strtok(NULL, " \t")) && word[0] == '-')
            ;
        if (!word)
            return 0;
        base = word;
    }
    for (size_t i = 0; i < sizeof shells / sizeof *shells; i++)
        if (!strcmp(base, shells[i]))
            return 1;
    return 0;
}

/* The file's content with farm's block cut out; *had says whether there was
 * one. NULL content means no file. */
static char *without_block(const char *text, int *had)
{
    const char *b, *e;
    char *out;
    *had = 0;
    if (!text)
        return NULL;
    b = strstr(text, BEGIN);
    if (!b && (b = strstr(text, BEGIN_NEW)) && b - text == (ptrdiff_t)strlen(SHEBANG) &&
        !strncmp(text, SHEBANG, strlen(SHEBANG)))
        b = text;
    if (!b)
        return strdup(text);
    e = strstr(b, END);
    e = e ? e + strlen(END) : b + strlen(b);
    *had = 1;
    out = malloc(strlen(text) + 1);
    memcpy(out, text, (size_t)(b - text));
    strcpy(out + (b - text), e);
    return out;
}

static int write_hook(const char *path, const char *content)
{
    int rc;
    if (!*content) {
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
        return 0;
    }
    if ((rc = farm_write_file(path, content, strlen(content), 0)) < 0)
        return rc;
    return chmod(path, 0755) < 0 ? -errno : 0;
}

/* Writes `s` as one shell word, single-quoted: nothing in it is expanded. */
static void sh_word(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

static char *block_for(const struct cli *cli, const char *kind, int new_file)
{
    char farm[PATH_MAX], *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    const char *home = getenv("FARM_HOME");
    cli_sibling(cli, "farm", farm, sizeof farm);
    /* A file farm creates is the shebang and the block, so that uninstall
     * can remove the file whole. */
    if (new_file)
        fputs(SHEBANG BEGIN_NEW, f);
    else
        fputs(BEGIN, f);
    fputs("# Submits the commit's farm.yaml tasks to farm (farm hook install); never\n"
          "# fails the git operation: when farm cannot be reached it prints one warning.\n", f);
    /* The home and the path of farm go in as single-quoted words: a $, a
     * backquote or a quote in them is never run by the hook. */
    if (home && *home) {
        fputs("[ -n \"${FARM_HOME:-}\" ] || FARM_HOME=", f);
        sh_word(f, home);
        fputs("; export FARM_HOME\n", f);
    }
    fputs("farm_bin=", f);
    sh_word(f, farm);
    fputc('\n', f);
    if (!strcmp(kind, "post-commit")) {
        fputs("\"$farm_bin\" submit --git . --rev HEAD --hook\n", f);
    } else {
        /* git gives these hooks the refs on stdin. The block comes first in
         * the file: it reads them from a copy and hands the copy back as
         * stdin, so that the rest of the hook (git lfs pre-push, a deploy
         * script) reads them too. */
        fputs("farm_in=$(mktemp \"${TMPDIR:-/tmp}/farm-hook.XXXXXX\") && cat >\"$farm_in\" || {\n"
              "    echo \"farm: cannot keep the hook's input; farm's part is skipped\" >&2\n"
              "    farm_in=\n"
              "}\n",
              f);
        if (!strcmp(kind, "post-receive"))
            fputs("[ -z \"$farm_in\" ] || while read -r farm_old farm_new farm_ref; do\n"
                  "    case \"$farm_new\" in *[!0]*) ;; *) continue ;; esac  # deleted ref\n"
                  "    \"$farm_bin\" submit --git . --rev \"$farm_new\" --ref \"$farm_ref\" "
                  "--hook </dev/null\n"
                  "done <\"$farm_in\"\n"
                  "[ -z \"$farm_in\" ] || { exec <\"$farm_in\"; rm -f \"$farm_in\"; }\n",
                  f);
        else /* pre-push */
            fputs("farm_status=0\n"
                  "[ -z \"$farm_in\" ] || while read -r farm_lref farm_lsha farm_rref farm_rsha; do\n"
                  "    case \"$farm_lsha\" in *[!0]*) ;; *) continue ;; esac  # deleting\n"
                  "    \"$farm_bin\" hook gate \"$farm_lsha\" \"$farm_lref\" </dev/null || "
                  "farm_status=1\n"
                  "done <\"$farm_in\"\n"
                  "[ -z \"$farm_in\" ] || { exec <\"$farm_in\"; rm -f \"$farm_in\"; }\n"
                  "[ $farm_status -eq 0 ] || exit 1\n",
                  f);
    }
    fputs(END, f);
    fclose(f);
    return out;
}

static int install_one(const struct cli *cli, const struct repo_info *ri, const char *kind,
                       int install)
{
    char path[PATH_MAX * 2 + 64], *text = NULL, *rest;
    int had, rc;
    snprintf(path, sizeof path, "%s/%s", ri->hooks, kind);
    if (farm_read_file(path, &text, NULL) < 0)
        text = NULL;
    rest = without_block(text, &had);
    if (install) {
        int new_file = !rest || !*rest;
        char *block, *out;
        size_t rl = rest ? strlen(rest) : 0, head = 0;
        struct stat lst;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
            /* Writing it would replace the link by a copy, or change the
             * file it points to (often one under version control). */
            fprintf(stderr,
                    "farm hook: %s is a symbolic link: farm does not write through it; add "
                    "farm's lines to its target yourself (see docs/git.md)\n",
                    path);
            free(text);
            free(rest);
            return CLI_USAGE;
        }
        if (!new_file && !shell_hook(rest)) {
            size_t n = strcspn(rest, "\n");
            fprintf(stderr,
                    "farm hook: %s is not a shell script (%.*s): farm adds its lines to shell "
                    "hooks only; call `farm submit --git . --rev HEAD --hook` from it yourself\n",
                    path, (int)(n > 80 ? 80 : n), rest);
            free(text);
            free(rest);
            return CLI_USAGE;
        }
        block = block_for(cli, kind, new_file);
        /* Right after the "#!" line: a hook that ends with `exit 0` (or
         * exec) would never reach lines appended after it. */
        if (!new_file && !strncmp(rest, "#!", 2))
            head = strcspn(rest, "\n") < rl ? strcspn(rest, "\n") + 1 : rl;
        out = malloc(rl + strlen(block) + 2);
        memcpy(out, rest ? rest : "", head);
        out[head] = '\0';
        if (head && out[head - 1] != '\n')
            strcat(out, "\n");
        strcat(out, block);
        if (rest)
            strcat(out, rest + head);
        farm_mkdirs(ri->hooks, 0755);
        rc = write_hook(path, out);
        free(block);
        free(out);
        if (rc == 0 && !cli->json)
            printf("installed farm's %s hook in %s%s\n", kind, path, had ? " (updated)" : "");
    } else {
        rc = had ? write_hook(path, rest ? rest : "") : 0;
        if (rc == 0 && !cli->json)
            printf("%s farm's %s hook in %s\n", had ? "removed" : "no", kind, path);
    }
    free(text);
    free(rest);
    if (rc < 0)
        fprintf(stderr, "farm hook: %s: %s\n", path, farm_strerror(rc));
    return rc < 0 ? CLI_USAGE : CLI_OK;
}

/* pre-push: waits for the pushed commit's tasks (submitting them when the
 * commit has none yet) and fails when one did not succeed. */
static int gate(struct cli *cli, const char *rev, const char *ref)
{
    json_t *reply, *t, *ids;
    size_t i;
    int rc, failed = 0;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return CLI_USAGE;
    if (cli_check_text("hook", "the current directory", cwd, NULL) ||
        cli_check_text("hook", "REV", rev, NULL) || cli_check_text("hook", "REF", ref, NULL))
        return CLI_USAGE;
    if ((rc = cli_call(cli,
                       json_pack("{s:s,s:{s:s,s:s,s:s?},s:b}", "op", "submit", "git", "repo", cwd,
                                 "rev", rev, "ref", ref, "reuse", 1),
                       &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        const char *code =
            json_string_value(json_object_get(json_object_get(reply, "error"), "code"));
        if (code && !strcmp(code, "FARM_ENOTFOUND")) {
            /* A commit without farm.yaml has no tasks to fail. */
            fprintf(stderr, "farm: no farm.yaml in %.12s: nothing to check before the push\n",
                    rev);
            json_decref(reply);
            return CLI_OK;
        }
        rc = cli_reply_error("gate", reply);
        json_decref(reply);
        return rc;
    }
    ids = json_incref(json_object_get(reply, "ids"));
    json_decref(reply);
    fprintf(stderr, "farm: waiting for %zu task(s) of %.12s before the push\n",
            json_array_size(ids), rev);
    if ((rc = cli_call(cli, json_pack("{s:s,s:o}", "op", "wait", "ids", ids), &reply)))
        return rc;
    json_array_foreach(json_object_get(reply, "tasks"), i, t)
    {
        const char *state = json_string_value(json_object_get(t, "state"));
        if (!strcmp(state, "succeeded") || !strcmp(state, "skipped"))
            continue;
        if (!failed)
            fprintf(stderr, "farm: push refused: tasks of %.12s did not succeed:\n", rev);
        failed = 1;
        fprintf(stderr, "  %s: %s%s%s  (farm logs %lld)\n",
                json_string_value(json_object_get(t, "task")), state,
                json_is_string(json_object_get(t, "reason")) ? " - " : "",
                json_is_string(json_object_get(t, "reason"))
                    ? json_string_value(json_object_get(t, "reason"))
                    : "",
                (long long)json_integer_value(json_object_get(t, "id")));
    }
    json_decref(reply);
    return failed ? CLI_TASK_FAILED : CLI_OK;
}

int cmd_hook(struct cli *cli, int argc, char **argv)
{
    const char *repo = ".", *gatekind = NULL, *v;
    struct repo_info ri;
    int install, rc;
    if (argc < 2)
        return cli_usage("hook", "expected install, uninstall or gate");
    if (!strcmp(argv[1], "gate")) {
        if (argc < 3 || argc > 4)
            return cli_usage("hook", "expected: farm hook gate REV [REF]");
        return gate(cli, argv[2], argc == 4 ? argv[3] : NULL);
    }
    if (strcmp(argv[1], "install") != 0 && strcmp(argv[1], "uninstall") != 0)
        return cli_usage("hook", "unknown subcommand \"%s\" (expected install or uninstall)",
                         argv[1]);
    install = !strcmp(argv[1], "install");
    for (int i = 2; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--json"))
            continue;
        if ((r = cli_opt("hook", argc, argv, &i, "--repo", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            repo = v;
        } else if ((r = cli_opt("hook", argc, argv, &i, "--gate", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            if (strcmp(v, "pre-push") != 0)
                return cli_usage("hook", "--gate: the only gate is pre-push, got \"%s\"", v);
            gatekind = v;
        } else {
            return cli_usage("hook", "unknown argument \"%s\"", argv[i]);
        }
    }
    if (find_repo(repo, &ri) < 0)
        return CLI_USAGE;
    {
        /* Where git itself runs hooks from: core.hooksPath, when set. */
        char gd[sizeof ri.hooks];
        if (git_hooks_dir(repo, gd, sizeof gd) == 0)
            snprintf(ri.hooks, sizeof ri.hooks, "%s", gd);
    }
    rc = install_one(cli, &ri, ri.bare ? "post-receive" : "post-commit", install);
    if (rc == CLI_OK && (gatekind || !install)) {
        if (ri.bare && gatekind)
            return cli_usage("hook", "--gate pre-push goes with a work tree, not a bare repo");
        if (!ri.bare)
            rc = install_one(cli, &ri, "pre-push", install);
    }
    return rc;
}
