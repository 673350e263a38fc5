/*
 * The host: poll, isatty and signals (for the command-line programs).
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/***
 * Wait until one of several file descriptors is readable.
 * @function poll
 * @tparam table fds array of file descriptors
 * @tparam[opt=-1] integer timeout milliseconds (negative: forever)
 * @treturn table|nil array of booleans (readable per fd), or nil, message, code (EINTR gives all false)
 */
static int l_poll(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int t = (int)opt_arg_int(L, 2, -1, INT_MIN, INT_MAX);
    size_t n = lua_rawlen(L, 1);
    if (n > 1024) luaL_argerror(L, 1, "at most 1024 descriptors");
    struct pollfd p[1024];
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        if (!lua_isnumber(L, -1) || !lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > INT_MAX)
            luaL_argerror(L, 1, "file descriptors (non-negative integers) expected");
        p[i].fd = (int)lua_tointeger(L, -1);
        p[i].events = POLLIN;
        p[i].revents = 0;
        lua_pop(L, 1);
    }
    int r = poll(p, (nfds_t)n, t);
    if (r < 0 && errno != EINTR) return push_fail(L, -errno);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushboolean(L, r > 0 && (p[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/***
 * Is this file descriptor a terminal?
 * @function isatty
 * @tparam integer fd
 * @treturn boolean
 */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)check_int(L, 1, INT_MIN, INT_MAX)));
    return 1;
}

/* ------------------------------------------------------------------ */
/* signals (for the CLI's Ctrl-C summary)                              */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t g_signal = 0;
static volatile sig_atomic_t g_signals = 0; /* how many arrived: a second Ctrl-C stops a sender at once */
static volatile sig_atomic_t g_hangups = 0; /* SIGHUPs not yet taken by `hangups` */

const volatile sig_atomic_t *sys_signal_count(void) { return &g_signals; }

static void on_signal(int sig)
{
    g_signal = sig;
    g_signals++;
}

static void on_hangup(int sig)
{
    (void)sig;
    g_hangups++;
}

/***
 * Catch SIGINT and SIGTERM: a blocking step returns early, and `interrupted`
 * reports the signal. With `hup` true, SIGHUP is caught too (and only counted, see
 * `hangups`): a reflector survives it. With `hup` the string "stop", SIGHUP is taken like
 * SIGTERM (a sender whose terminal hangs up ends with its summary). Process-wide; meant
 * for command-line programs.
 * @function trap_signals
 * @tparam[opt] boolean|string hup true: also count SIGHUP; "stop": SIGHUP stops like SIGTERM
 */
static int l_trap_signals(lua_State *L)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (lua_type(L, 1) == LUA_TSTRING) {
        const char *how = lua_tostring(L, 1);
        if (strcmp(how, "stop") != 0)
            return luaL_argerror(L, 1, "true or \"stop\" expected");
        sigaction(SIGHUP, &sa, NULL);
    } else if (lua_toboolean(L, 1)) {
        sa.sa_handler = on_hangup;
        sigaction(SIGHUP, &sa, NULL);
    }
    return 0;
}

/***
 * The signal caught since `trap_signals` (or the last reset), or false; and how many
 * signals arrived. `interrupted(true)` reports, then clears both (a program that goes on
 * after a Ctrl-C, e.g. to run another measurement).
 * @function interrupted
 * @tparam[opt] boolean reset clear after reporting
 * @treturn integer|boolean the last signal
 * @treturn integer how many (SIGINT and SIGTERM together)
 */
static int l_interrupted(lua_State *L)
{
    int sig = g_signal, n = g_signals;
    if (lua_toboolean(L, 1)) {
        g_signal = 0;
        g_signals = 0;
    }
    if (sig)
        lua_pushinteger(L, sig);
    else
        lua_pushboolean(L, 0);
    lua_pushinteger(L, n);
    return 2;
}

/***
 * How many SIGHUPs arrived since the last call (see `trap_signals`); the count restarts at 0.
 * @function hangups
 * @treturn integer
 */
static int l_hangups(lua_State *L)
{
    int n = g_hangups;
    g_hangups = 0;
    lua_pushinteger(L, n);
    return 1;
}

void sys_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"poll", l_poll},
        {"isatty", l_isatty},
        {"trap_signals", l_trap_signals},
        {"interrupted", l_interrupted},
        {"hangups", l_hangups},
        {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}
