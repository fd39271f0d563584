/*
 * procvision_frame: lease a shared-memory frame buffer from a ProcVision Runner on this host,
 * write a frame into it, and read the verdict. One header, one source, C99, no third-party
 * dependencies (BSD sockets / Winsock, POSIX shm_open+mmap / Win32 file mappings).
 *
 * Flow (a camera ring of buffers is a few leases reused frame after frame):
 *
 *     pv_client c;  pv_lease l;  pv_verdict v;
 *     pv_client_init(&c, "127.0.0.1", 8765, token_or_NULL);
 *     pv_lease_create(&c, height, width, 3, &l);      // POST /frames, maps the segment
 *     memcpy(pv_lease_pixels(&l), rgb, l.payload_size); // or let the camera SDK write there
 *     pv_lease_commit(&l);                              // publishes a new sequence number
 *     pv_inspect(&c, &l, "pid", 1, NULL, &v);           // POST /inspect frame=<lease id>
 *     ... v.result_status is "OK" or "NG" ...
 *     pv_lease_release(&c, &l);  pv_client_close(&c);
 *
 * Do not write into a lease while a pv_inspect on it is running: the worker reads that very
 * memory. Leases are refused to clients that are not on the Runner's host (loopback only).
 *
 * Windows: the Runner's Windows build names a segment with a plain name (no "Global\\" prefix);
 * pv_lease_create opens it with OpenFileMappingA. That path is written to the same layout but is
 * UNTESTED here (the project's CI runs on Linux).
 */
#ifndef PROCVISION_FRAME_H
#define PROCVISION_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PV_OK 0
#define PV_ERR_SOCKET -1   /* connect/send/recv failed */
#define PV_ERR_HTTP -2     /* the Runner answered non-2xx; see pv_client.last_error */
#define PV_ERR_PROTOCOL -3 /* an answer this library cannot read */
#define PV_ERR_MAP -4      /* the segment could not be opened or mapped */
#define PV_ERR_ARG -5      /* a bad argument */

typedef struct pv_client {
    char host[256];
    int port;
    char token[256];
    char client_id[64];
    int last_status;            /* HTTP status of the last call */
    char last_error_code[16];   /* error_code of the last non-2xx answer */
    char last_error[512];       /* its message */
} pv_client;

typedef struct pv_lease {
    char lease_id[64];
    char segment[64];
    int height, width, channels;
    size_t size;          /* bytes of the mapping (header + payload, rounded up) */
    size_t payload_size;  /* height * width * channels */
    uint64_t seq;         /* the last committed sequence number */
    unsigned char *base;  /* the mapping */
    void *handle;         /* Windows: the file mapping handle */
} pv_lease;

typedef struct pv_verdict {
    char pre_status[8];      /* "OK" / "ERROR" */
    char status[8];          /* execute's status ("" when execute did not run) */
    char result_status[8];   /* "OK" / "NG" when status is "OK" */
    char error_code[16];     /* of the failing phase */
    char message[256];
    int defect_count;
    int first_defect[4];     /* x, y, width, height of the first defect rect */
} pv_verdict;

int pv_client_init(pv_client *c, const char *host, int port, const char *token);
int pv_lease_create(pv_client *c, int height, int width, int channels, pv_lease *out);
unsigned char *pv_lease_pixels(pv_lease *l);
uint64_t pv_lease_commit(pv_lease *l);
/* session_id may be NULL; raw_json (may be NULL) receives the whole answer, NUL-terminated. */
int pv_inspect(pv_client *c, pv_lease *l, const char *pid, int step_index, const char *session_id,
               pv_verdict *out, char *raw_json, size_t raw_cap);
int pv_lease_release(pv_client *c, pv_lease *l);
void pv_client_close(pv_client *c);

#ifdef __cplusplus
}
#endif
#endif
