/* A station's inspection loop, reduced to one frame: lease a buffer, draw a frame into it (a
 * camera SDK would write there directly), commit, inspect, print the verdict.
 *
 *   cc -O2 -o example_station example_station.c procvision_frame.c    (Linux; add -lrt on old glibc)
 *   ./example_station HOST PORT PID HEIGHT WIDTH [MARKER_X MARKER_Y MARKER_SIZE] [TOKEN]
 *
 * Prints one line: "verdict <pre_status> <status> <result_status> <defects> <x> <y> <w> <h>".
 * A C++ station calls the same functions; a C# station P/Invokes them (the structs are plain).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procvision_frame.h"

int main(int argc, char **argv) {
    pv_client client;
    pv_lease lease;
    pv_verdict verdict;
    unsigned char *px;
    int height, width, mx = -1, my = -1, ms = 0, rc;
    const char *token = NULL;
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT PID HEIGHT WIDTH [MX MY MSIZE] [TOKEN]\n", argv[0]);
        return 2;
    }
    height = atoi(argv[4]);
    width = atoi(argv[5]);
    if (argc >= 9) {
        mx = atoi(argv[6]);
        my = atoi(argv[7]);
        ms = atoi(argv[8]);
    }
    if (argc >= 10) token = argv[9];
    if (pv_client_init(&client, argv[1], atoi(argv[2]), token) != PV_OK) return 2;
    rc = pv_lease_create(&client, height, width, 3, &lease);
    if (rc != PV_OK) {
        fprintf(stderr, "lease failed: %d HTTP %d %s %s\n", rc, client.last_status,
                client.last_error_code, client.last_error);
        return 1;
    }
    /* The frame: a grey gradient, and a pure red square where the marker goes. */
    px = pv_lease_pixels(&lease);
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            unsigned char *p = px + ((size_t)y * (size_t)width + (size_t)x) * 3;
            int in = ms > 0 && x >= mx && x < mx + ms && y >= my && y < my + ms;
            p[0] = in ? 255 : (unsigned char)((x + y) % 200);
            p[1] = in ? 0 : p[0];
            p[2] = in ? 0 : p[0];
        }
    }
    pv_lease_commit(&lease);
    rc = pv_inspect(&client, &lease, argv[3], 1, NULL, &verdict, NULL, 0);
    if (rc != PV_OK) {
        fprintf(stderr, "inspect failed: %d HTTP %d %s %s\n", rc, client.last_status,
                client.last_error_code, client.last_error);
        pv_lease_release(&client, &lease);
        return 1;
    }
    printf("verdict %s %s %s %d %d %d %d %d\n", verdict.pre_status,
           verdict.status[0] ? verdict.status : "-",
           verdict.result_status[0] ? verdict.result_status : "-", verdict.defect_count,
           verdict.first_defect[0], verdict.first_defect[1], verdict.first_defect[2],
           verdict.first_defect[3]);
    rc = pv_lease_release(&client, &lease);
    pv_client_close(&client);
    return rc == PV_OK ? 0 : 1;
}
