/* service.c - what a long-running service needs: dropping root after the
 * sockets are bound, a process name `ps` and `top` show, key files read with
 * their permissions checked. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

static void say(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

int stamp_user_lookup(const char *spec, unsigned *uid_out, unsigned *gid_out, char *name_out, size_t namecap,
                      char *err, size_t errcap)
{
    char user[256], *group = NULL;
    if (!spec || !*spec || strlen(spec) >= sizeof user) {
        say(err, errcap, "bad user '%s'", spec ? spec : "");
        return STAMP_EINVAL;
    }
    strcpy(user, spec);
    char *colon = strchr(user, ':');
    if (colon) {
        *colon = 0;
        group = colon + 1;
        if (!*group) group = NULL;
    }
    struct passwd *pw = getpwnam(user);
    char *end;
    if (!pw) {
        unsigned long id = strtoul(user, &end, 10);
        if (*user && !*end) pw = getpwuid((uid_t)id);
    }
    if (!pw) {
        say(err, errcap, "no such user '%s'", user);
        return STAMP_EINVAL;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (name_out && namecap) snprintf(name_out, namecap, "%s", pw->pw_name);
    if (group) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            unsigned long id = strtoul(group, &end, 10);
            if (*group && !*end) gr = getgrgid((gid_t)id);
        }
        if (!gr) {
            say(err, errcap, "no such group '%s'", group);
            return STAMP_EINVAL;
        }
        gid = gr->gr_gid;
    }
    if (uid_out) *uid_out = (unsigned)uid;
    if (gid_out) *gid_out = (unsigned)gid;
    return 0;
}

int stamp_drop_privileges(const char *spec, char *err, size_t errcap)
{
    unsigned u, g;
    char name[256];
    int rc = stamp_user_lookup(spec, &u, &g, name, sizeof name, err, errcap);
    if (rc) return rc;
    uid_t uid = (uid_t)u;
    gid_t gid = (gid_t)g;
    /* supplementary groups: the user's (plus the primary one), then gid, then uid */
    if (initgroups(name, gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        int e = errno;
        say(err, errcap, "cannot switch to user '%s': %s", spec, strerror(e));
        return -e;
    }
    /* refuse to go on unless the drop is complete and cannot be undone */
    if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid ||
        (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))) {
        say(err, errcap, "switching to user '%s' did not drop every privilege", spec);
        return STAMP_EINVAL;
    }
    return 0;
}

/* errno when `path` cannot be written by the calling process (created in its directory when absent), 0 if it can */
static int path_write_errno(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return EISDIR;
        return access(path, W_OK) == 0 ? 0 : errno;
    }
    if (errno != ENOENT) return errno;
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    return access(dir, W_OK | X_OK) == 0 ? 0 : errno;
}

int stamp_path_writable_as(const char *path, const char *user_group, char *err, size_t errcap)
{
    if (!path || !*path || strlen(path) >= 4096) {
        say(err, errcap, "no file name");
        return STAMP_EINVAL;
    }
    unsigned u = 0, g = 0;
    char name[256];
    int e;
    if (user_group) {
        int rc = stamp_user_lookup(user_group, &u, &g, name, sizeof name, err, errcap);
        if (rc) return rc;
    }
    if (!user_group || geteuid() != 0 || (uid_t)u == geteuid()) {
        e = path_write_errno(path); /* no switch (or one only root could make: the drop reports that) */
    } else {
        gid_t groups[64];
        int ng = 64;
        if (getgrouplist(name, (gid_t)g, groups, &ng) < 0) ng = 0;
        pid_t pid = fork();
        if (pid < 0) return 0; /* cannot tell here: writing the file will say */
        if (pid == 0) {        /* the user's view, in a child that exits at once */
            if (setgroups((size_t)ng, groups) != 0 || setgid((gid_t)g) != 0 || setuid((uid_t)u) != 0) _exit(0);
            e = path_write_errno(path);
            _exit(e > 0 && e < 256 ? e : 0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        e = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
    }
    if (!e) return 0;
    if (user_group)
        say(err, errcap, "not writable as user '%s': %s", user_group, strerror(e));
    else
        say(err, errcap, "not writable: %s", strerror(e));
    return -e;
}

int stamp_set_process_name(const char *name)
{
    int rc = 0;
    char comm[16];
    snprintf(comm, sizeof comm, "%s", name);
    if (prctl(PR_SET_NAME, comm, 0, 0, 0) != 0) rc = -errno;
    /* argv: the kernel shows the memory between arg_start and arg_end as
     * /proc/PID/cmdline; it lies right before the environment strings. */
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rc ? rc : -errno;
    char cmd[4096];
    ssize_t n = read(fd, cmd, sizeof cmd);
    close(fd);
    if (n <= 0 || n == (ssize_t)sizeof cmd || !environ || !environ[0]) return rc ? rc : STAMP_EINVAL;
    char *start = environ[0] - n;
    if (memcmp(start, cmd, (size_t)n) != 0) return rc ? rc : STAMP_EINVAL;
    size_t len = strlen(name);
    if (len >= (size_t)n) len = (size_t)n - 1;
    memset(start, 0, (size_t)n);
    memcpy(start, name, len);
    return rc;
}

int stamp_key_file_read(const char *path, uint8_t *key, size_t cap, char *err, size_t errcap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        say(err, errcap, "cannot open key file %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        say(err, errcap, "key file %s is not a regular file", path);
        return STAMP_EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        char mode[8];
        snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
        say(err, errcap, "refusing key file %s: readable by group or others (mode %s; chmod 600 it)", path, mode);
        return STAMP_EINVAL;
    }
    char text[2 * STAMP_KEY_MAX + 64];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n < 0) {
        int e = errno;
        say(err, errcap, "cannot read key file %s: %s", path, strerror(e));
        return -e;
    }
    /* hex digits, whitespace allowed around them */
    char hex[2 * STAMP_KEY_MAX + 1];
    size_t h = 0;
    for (ssize_t i = 0; i < n; i++) {
        char ch = text[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') continue;
        if (h >= sizeof hex - 1) {
            h = 0;
            break;
        }
        hex[h++] = ch;
    }
    hex[h] = 0;
    int k = h ? stamp_hex_decode(hex, key, cap) : STAMP_EINVAL;
    explicit_bzero(hex, sizeof hex);
    explicit_bzero(text, sizeof text);
    if (k <= 0) {
        say(err, errcap, "key file %s: expected hex digits (an even number, at most 512)", path);
        return STAMP_EINVAL;
    }
    return k;
}

int stamp_key_path_check(const char *path, int is_dir, long also_uid, char *err, size_t errcap)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        say(err, errcap, "cannot open %s %s: %s", is_dir ? "key directory" : "key file", path, strerror(e));
        return -e;
    }
    if (is_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        say(err, errcap, "%s is not a %s", path, is_dir ? "directory" : "regular file");
        return STAMP_EINVAL;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid() && (also_uid < 0 || st.st_uid != (uid_t)also_uid)) {
        say(err, errcap, "refusing %s %s: owned by uid %u (expected root or the user stamp runs as)",
            is_dir ? "key directory" : "key file", path, (unsigned)st.st_uid);
        return STAMP_EINVAL;
    }
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    if (is_dir && (st.st_mode & 022)) {
        say(err, errcap, "refusing key directory %s: writable by group or others (mode %s; chmod go-w it)", path, mode);
        return STAMP_EINVAL;
    }
    if (!is_dir && (st.st_mode & 077)) {
        say(err, errcap, "refusing key file %s: readable by group or others (mode %s; chmod 600 it)", path, mode);
        return STAMP_EINVAL;
    }
    return 0;
}

int stamp_clock_state_check(char *err, size_t errcap)
{
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    if (adjtimex(&tx) < 0) {
        int e = errno;
        say(err, errcap, "cannot read the clock's synchronization state (adjtimex: %s)", strerror(e));
        return -e;
    }
    return 0;
}

static int key_name_ok(const char *nm, size_t l)
{
    if (l == 11 && strcmp(nm, "default.key") == 0) return 1;
    if (l != 8 || strcmp(nm + 4, ".key") != 0) return 0;
    for (int i = 0; i < 4; i++) {
        char c = nm[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return 0;
    }
    return 1;
}

/* ".key" in any case somewhere in the name */
static int key_name_like(const char *nm, size_t l)
{
    for (size_t i = 0; i + 4 <= l; i++) {
        if (nm[i] == '.' && (nm[i + 1] | 0x20) == 'k' && (nm[i + 2] | 0x20) == 'e' && (nm[i + 3] | 0x20) == 'y')
            return 1;
    }
    return 0;
}

/* The names in `dir` that `want` keeps, '\n'-terminated in `names`; past `cap` the rest is an error
 * (`full_fails`) or left out (still counted). Returns how many, or -errno / STAMP_EINVAL with `err`. */
static int dir_names(const char *dir, int (*want)(const char *, size_t), int full_fails, char *names, size_t cap,
                     size_t *len, char *err, size_t errcap)
{
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        say(err, errcap, "cannot read key directory %s: %s", dir, strerror(e));
        return -e;
    }
    size_t n = 0;
    int count = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        if (l > 255 || !want(nm, l)) {
            errno = 0;
            continue;
        }
        if (n + l + 1 <= cap) {
            memcpy(names + n, nm, l);
            names[n + l] = '\n';
            n += l + 1;
        } else if (full_fails) {
            closedir(d);
            say(err, errcap, "key directory %s: too many keys", dir);
            return STAMP_EINVAL;
        }
        count++;
        errno = 0;
    }
    int e = errno;
    closedir(d);
    if (e) {
        say(err, errcap, "cannot read key directory %s: %s", dir, strerror(e));
        return -e;
    }
    *len = n;
    return count;
}

/* looks meant as a key but is not a key file name */
static int key_name_misnamed(const char *nm, size_t l) { return !key_name_ok(nm, l) && key_name_like(nm, l); }

/* the names a key can have: XXXX.key (8) and default.key (11) */
static int key_name_candidate(const char *nm, size_t l)
{
    return (l == 8 || l == 11) && strcmp(nm + l - 4, ".key") == 0;
}

int stamp_key_dir_misnamed(const char *dir, char *names, size_t cap, size_t *len, char *err, size_t errcap)
{
    return dir_names(dir, key_name_misnamed, 0, names, cap, len, err, errcap);
}

int stamp_key_dir_list(const char *dir, char *names, size_t cap, size_t *len, char *err, size_t errcap)
{
    return dir_names(dir, key_name_candidate, 1, names, cap, len, err, errcap);
}
