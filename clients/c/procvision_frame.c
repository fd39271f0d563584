/* procvision_frame.c: see procvision_frame.h. C99; POSIX (tested) and Win32 (untested). */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "procvision_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
typedef SOCKET pv_socket;
#define PV_BAD_SOCKET INVALID_SOCKET
#define pv_closesocket closesocket
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
typedef int pv_socket;
#define PV_BAD_SOCKET (-1)
#define pv_closesocket close
#endif

#define PV_HEADER_SIZE 64
#define PV_SEQ_OFFSET 8
#define PV_MAX_ANSWER (4u * 1024u * 1024u)

/* ---------------------------------------------------------------- small JSON reader
 * Enough JSON to walk to a value by a path of object keys ("execute", "data", "result_status")
 * and read a string, an integer or the length of an array. Values are skipped structurally, so a
 * key that also occurs deeper in another branch is never mistaken for the one asked. */

static const char *pv_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    return p;
}

static const char *pv_skip_string(const char *p) { /* p at the opening quote */
    for (p++; *p; p++) {
        if (*p == '\\' && p[1]) p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}

static const char *pv_skip_value(const char *p) {
    int depth = 0;
    p = pv_ws(p);
    do {
        if (!*p) return NULL;
        if (*p == '"') {
            p = pv_skip_string(p);
            if (!p) return NULL;
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        else if (depth == 0) { /* a scalar: runs to the next delimiter */
            while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
            return p;
        }
        p++;
    } while (depth > 0);
    return p;
}

/* Find `key` among the members of the object at p; returns its value's start or NULL. */
static const char *pv_member(const char *p, const char *key) {
    size_t klen = strlen(key);
    p = pv_ws(p);
    if (*p != '{') return NULL;
    p = pv_ws(p + 1);
    while (*p == '"') {
        const char *name = p + 1;
        const char *end = pv_skip_string(p);
        if (!end) return NULL;
        p = pv_ws(end);
        if (*p != ':') return NULL;
        p = pv_ws(p + 1);
        if ((size_t)(end - 1 - name) == klen && strncmp(name, key, klen) == 0) return p;
        p = pv_skip_value(p);
        if (!p) return NULL;
        p = pv_ws(p);
        if (*p == ',') p = pv_ws(p + 1);
    }
    return NULL;
}

static const char *pv_path(const char *json, const char *const *keys, int n) {
    const char *p = json;
    for (int i = 0; i < n && p; i++) p = pv_member(p, keys[i]);
    return p;
}

/* Copy the JSON string at p (unescaping only \" and \\; other escapes kept) into out. */
static int pv_string(const char *p, char *out, size_t cap) {
    size_t n = 0;
    if (!p || *p != '"' || cap == 0) return -1;
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) p++;
        if (n + 1 < cap) out[n++] = *p;
    }
    out[n] = '\0';
    return *p == '"' ? 0 : -1;
}

static int pv_array_length(const char *p) {
    int count = 0;
    p = pv_ws(p);
    if (*p != '[') return -1;
    p = pv_ws(p + 1);
    if (*p == ']') return 0;
    while (p && *p) {
        p = pv_skip_value(p);
        if (!p) return -1;
        count++;
        p = pv_ws(p);
        if (*p == ',') p = pv_ws(p + 1);
        else break;
    }
    return count;
}

/* ---------------------------------------------------------------- HTTP/1.1 over one socket */

static int pv_net_init(void) {
#ifdef _WIN32
    static int started = 0;
    WSADATA wsa;
    if (!started && WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return -1;
    started = 1;
#endif
    return 0;
}

static pv_socket pv_dial(const pv_client *c) {
    struct addrinfo hints, *res = NULL, *ai;
    char port[16];
    pv_socket s = PV_BAD_SOCKET;
    if (pv_net_init() != 0) return PV_BAD_SOCKET;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", c->port);
    if (getaddrinfo(c->host, port, &hints, &res) != 0) return PV_BAD_SOCKET;
    for (ai = res; ai; ai = ai->ai_next) {
        s = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (s == PV_BAD_SOCKET) continue;
        if (connect(s, ai->ai_addr, (int)ai->ai_addrlen) == 0) break;
        pv_closesocket(s);
        s = PV_BAD_SOCKET;
    }
    freeaddrinfo(res);
    if (s != PV_BAD_SOCKET) {
        int one = 1;
#ifdef _WIN32
        DWORD ms = 120000;
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&ms, sizeof ms);
#else
        struct timeval tv = {120, 0}; /* every wait has a deadline */
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
#endif
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    }
    return s;
}

static int pv_send_all(pv_socket s, const char *data, size_t len) {
    while (len > 0) {
        int n = (int)send(s, data, (int)len, 0);
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One request on a fresh connection (Connection: close); *answer is malloc'd, NUL-terminated. */
static int pv_http(pv_client *c, const char *method, const char *path, const char *ctype,
                   const char *body, char **answer) {
    char head[1024], *buf = NULL, *split;
    size_t len = 0, cap = 65536, blen = body ? strlen(body) : 0;
    long content_length = -1;
    pv_socket s;
    int n;
    *answer = NULL;
    c->last_status = 0;
    c->last_error_code[0] = c->last_error[0] = '\0';
    n = snprintf(head, sizeof head,
                 "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"
                 "X-ProcVision-Client: %s\r\nContent-Length: %zu\r\n",
                 method, path, c->host, c->port, c->client_id, blen);
    if (n > 0 && (size_t)n < sizeof head && ctype)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Type: %s\r\n", ctype);
    if (n > 0 && (size_t)n < sizeof head && c->token[0])
        n += snprintf(head + n, sizeof head - (size_t)n, "Authorization: Bearer %s\r\n", c->token);
    if (n > 0 && (size_t)n < sizeof head) n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (n < 0 || (size_t)n >= sizeof head) return PV_ERR_ARG;
    s = pv_dial(c);
    if (s == PV_BAD_SOCKET) return PV_ERR_SOCKET;
    if (pv_send_all(s, head, (size_t)n) != 0 || (blen && pv_send_all(s, body, blen) != 0)) {
        pv_closesocket(s);
        return PV_ERR_SOCKET;
    }
    buf = (char *)malloc(cap + 1);
    if (!buf) {
        pv_closesocket(s);
        return PV_ERR_SOCKET;
    }
    for (;;) {
        if (len == cap) {
            char *bigger;
            if (cap >= PV_MAX_ANSWER) break;
            cap *= 2;
            bigger = (char *)realloc(buf, cap + 1);
            if (!bigger) break;
            buf = bigger;
        }
        n = (int)recv(s, buf + len, (int)(cap - len), 0);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        split = strstr(buf, "\r\n\r\n");
        if (split && content_length < 0) {
            const char *cl = strstr(buf, "\r\ncontent-length:");
            if (!cl) cl = strstr(buf, "\r\nContent-Length:");
            if (cl && cl < split) content_length = strtol(cl + 17, NULL, 10);
        }
        if (split && content_length >= 0 && len >= (size_t)(split + 4 - buf) + (size_t)content_length)
            break;
    }
    pv_closesocket(s);
    buf[len] = '\0';
    split = strstr(buf, "\r\n\r\n");
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || !split) {
        free(buf);
        return PV_ERR_PROTOCOL;
    }
    c->last_status = atoi(buf + 9);
    memmove(buf, split + 4, len - (size_t)(split + 4 - buf) + 1);
    *answer = buf;
    if (c->last_status < 200 || c->last_status >= 300) {
        const char *k1[] = {"error_code"}, *k2[] = {"message"};
        pv_string(pv_path(buf, k1, 1), c->last_error_code, sizeof c->last_error_code);
        pv_string(pv_path(buf, k2, 1), c->last_error, sizeof c->last_error);
        return PV_ERR_HTTP;
    }
    return PV_OK;
}

/* ---------------------------------------------------------------- mapping a segment */

static int pv_map(pv_lease *l) {
#ifdef _WIN32
    /* UNTESTED: the Windows Runner creates the mapping under this plain name and holds it. */
    HANDLE h = OpenFileMappingA(FILE_MAP_READ | FILE_MAP_WRITE, FALSE, l->segment);
    void *view;
    if (!h) return PV_ERR_MAP;
    view = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, l->size);
    if (!view) {
        CloseHandle(h);
        return PV_ERR_MAP;
    }
    l->handle = h;
    l->base = (unsigned char *)view;
#else
    char name[80];
    struct stat st;
    void *view;
    int fd;
    snprintf(name, sizeof name, "/%s", l->segment);
    fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) return PV_ERR_MAP;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < l->size) {
        close(fd);
        return PV_ERR_MAP;
    }
    view = mmap(NULL, l->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (view == MAP_FAILED) return PV_ERR_MAP;
    l->base = (unsigned char *)view;
    l->handle = NULL;
#endif
    if (memcmp(l->base, "PVSM", 4) != 0) {
        return PV_ERR_MAP;
    }
    return PV_OK;
}

static void pv_unmap(pv_lease *l) {
    if (!l->base) return;
#ifdef _WIN32
    UnmapViewOfFile(l->base);
    if (l->handle) CloseHandle((HANDLE)l->handle);
#else
    munmap(l->base, l->size);
#endif
    l->base = NULL;
    l->handle = NULL;
}

/* ---------------------------------------------------------------- public API */

int pv_client_init(pv_client *c, const char *host, int port, const char *token) {
    static unsigned counter = 0;
    if (!c || !host || strlen(host) >= sizeof c->host || port <= 0 || port > 65535) return PV_ERR_ARG;
    if (token && strlen(token) >= sizeof c->token) return PV_ERR_ARG;
    memset(c, 0, sizeof *c);
    strcpy(c->host, host);
    c->port = port;
    if (token) strcpy(c->token, token);
#ifdef _WIN32
    snprintf(c->client_id, sizeof c->client_id, "c-%lu-%u", (unsigned long)GetCurrentProcessId(),
             ++counter);
#else
    snprintf(c->client_id, sizeof c->client_id, "c-%ld-%u", (long)getpid(), ++counter);
#endif
    return PV_OK;
}

int pv_lease_create(pv_client *c, int height, int width, int channels, pv_lease *out) {
    char body[160], *answer = NULL;
    const char *kid[] = {"lease_id"}, *kseg[] = {"segment"}, *ksize[] = {"size"};
    const char *p;
    long pid;
    int rc;
    if (!c || !out || height <= 0 || width <= 0 || (channels != 1 && channels != 3)) return PV_ERR_ARG;
    memset(out, 0, sizeof *out);
#ifdef _WIN32
    pid = (long)GetCurrentProcessId();
#else
    pid = (long)getpid();
#endif
    snprintf(body, sizeof body, "{\"height\":%d,\"width\":%d,\"channels\":%d,\"client_pid\":%ld}",
             height, width, channels, pid);
    rc = pv_http(c, "POST", "/frames", "application/json", body, &answer);
    if (rc != PV_OK) {
        free(answer);
        return rc;
    }
    p = pv_path(answer, ksize, 1);
    if (pv_string(pv_path(answer, kid, 1), out->lease_id, sizeof out->lease_id) != 0 ||
        pv_string(pv_path(answer, kseg, 1), out->segment, sizeof out->segment) != 0 || !p) {
        free(answer);
        return PV_ERR_PROTOCOL;
    }
    out->size = (size_t)strtoull(p, NULL, 10);
    free(answer);
    out->height = height;
    out->width = width;
    out->channels = channels;
    out->payload_size = (size_t)height * (size_t)width * (size_t)channels;
    if (out->size < PV_HEADER_SIZE + out->payload_size) return PV_ERR_PROTOCOL;
    rc = pv_map(out);
    if (rc != PV_OK) {
        pv_unmap(out);
        pv_lease_release(c, out);
    }
    return rc;
}

unsigned char *pv_lease_pixels(pv_lease *l) { return l && l->base ? l->base + PV_HEADER_SIZE : NULL; }

uint64_t pv_lease_commit(pv_lease *l) {
    uint64_t seq;
    if (!l || !l->base) return 0;
    seq = l->seq + 1;
    /* Little-endian hosts (x86, ARM as Windows/Linux run them); the pixels must be visible
     * before the sequence number that publishes them: a release store. */
#if defined(_MSC_VER)
    MemoryBarrier();
    *(volatile uint64_t *)(l->base + PV_SEQ_OFFSET) = seq;
#else
    __atomic_store_n((uint64_t *)(void *)(l->base + PV_SEQ_OFFSET), seq, __ATOMIC_RELEASE);
#endif
    l->seq = seq;
    return seq;
}

static void pv_read_phase(const char *json, const char *phase, char *status, size_t scap,
                          pv_verdict *out) {
    const char *k_status[] = {phase, "status"}, *k_code[] = {phase, "error_code"};
    const char *k_msg[] = {phase, "message"};
    pv_string(pv_path(json, k_status, 2), status, scap);
    if (strcmp(status, "OK") != 0) {
        pv_string(pv_path(json, k_code, 2), out->error_code, sizeof out->error_code);
        pv_string(pv_path(json, k_msg, 2), out->message, sizeof out->message);
    }
}

int pv_inspect(pv_client *c, pv_lease *l, const char *pid, int step_index, const char *session_id,
               pv_verdict *out, char *raw_json, size_t raw_cap) {
    char body[512], *answer = NULL;
    const char *k_rs[] = {"execute", "data", "result_status"};
    const char *k_rects[] = {"execute", "data", "defect_rects"};
    const char *k_f[] = {"x", "y", "width", "height"};
    const char *rects;
    int rc, i;
    if (!c || !l || !pid || !out || l->seq == 0 || strlen(pid) > 100) return PV_ERR_ARG;
    if (session_id && strlen(session_id) > 128) return PV_ERR_ARG;
    memset(out, 0, sizeof *out);
    /* pid and session ids are [A-Za-z0-9._-] (the Runner refuses others): no escaping needed. */
    snprintf(body, sizeof body, "pid=%s&step_index=%d&frame=%s&frame_seq=%llu%s%s", pid,
             step_index, l->lease_id, (unsigned long long)l->seq, session_id ? "&session_id=" : "",
             session_id ? session_id : "");
    rc = pv_http(c, "POST", "/inspect", "application/x-www-form-urlencoded", body, &answer);
    if (raw_json && raw_cap && answer) {
        strncpy(raw_json, answer, raw_cap - 1);
        raw_json[raw_cap - 1] = '\0';
    }
    if (rc != PV_OK) {
        free(answer);
        return rc;
    }
    pv_read_phase(answer, "pre_execute", out->pre_status, sizeof out->pre_status, out);
    if (strcmp(out->pre_status, "OK") == 0) {
        pv_read_phase(answer, "execute", out->status, sizeof out->status, out);
        pv_string(pv_path(answer, k_rs, 3), out->result_status, sizeof out->result_status);
        rects = pv_path(answer, k_rects, 3);
        out->defect_count = rects ? pv_array_length(rects) : 0;
        if (out->defect_count > 0) {
            const char *first = pv_ws(rects) + 1;
            for (i = 0; i < 4; i++) {
                const char *v = pv_member(first, k_f[i]);
                out->first_defect[i] = v ? atoi(v) : 0;
            }
        }
    }
    free(answer);
    return PV_OK;
}

int pv_lease_release(pv_client *c, pv_lease *l) {
    char path[96], *answer = NULL;
    int rc;
    if (!c || !l || !l->lease_id[0]) return PV_ERR_ARG;
    pv_unmap(l);
    snprintf(path, sizeof path, "/frames/%s", l->lease_id);
    rc = pv_http(c, "DELETE", path, NULL, NULL, &answer);
    free(answer);
    l->lease_id[0] = '\0';
    return rc;
}

void pv_client_close(pv_client *c) {
    (void)c; /* connections are per request; nothing is held */
}
