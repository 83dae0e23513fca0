/* The C ABI from C: srexport.h compiles as C, statuses and messages come back, a real
 * upscale runs with a progress callback. Usage: test_c_abi TINY_BUNDLE_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srexport.h"

static int failures = 0;
#define EXPECT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("    %s:%d: EXPECT(%s) [%s]\n", __FILE__, __LINE__, #cond, srx_last_error()); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static int progress(int done, int total, void* user) {
    int* calls = (int*)user;
    (*calls)++;
    return done > total; /* never cancels */
}

int main(int argc, char** argv) {
    srx_options opt;
    srx_upscaler* up = NULL;
    srx_info info;
    srx_plan plan;
    int ow = 0, oh = 0, calls = 0;
    float field[6];
    if (argc < 2) return 2;
    srx_options_init(&opt);
    EXPECT(opt.struct_size == sizeof opt && opt.batch == 1 && opt.overlap == -1 && opt.verify_hashes == 1);
    EXPECT(opt.patch_h == SRX_PATCH_AUTO && opt.patch_w == SRX_PATCH_AUTO && strcmp(opt.stitch, "auto") == 0);
    EXPECT(strcmp(srx_version(), "0.1.0") == 0);
    EXPECT(srx_open("/nonexistent/bundle", &opt, &up) == SRX_ERR_BUNDLE && up == NULL);
    EXPECT(strstr(srx_last_error(), "bundle not found: /nonexistent/bundle is not a directory") != NULL);
    EXPECT(strcmp(srx_status_name(SRX_ERR_CANCELLED), "cancelled") == 0);
    EXPECT(srx_normal_field(7, 0, -1, -1, 2, 3, field) == SRX_OK && fabsf(field[0]) < 10.0f);
    EXPECT(srx_normal_field(7, 0, 0, 0, 2, 3, NULL) == SRX_ERR_ARGUMENT);
    if (!srx_backend_available("opencv")) {
        printf("SKIP the C ABI upscale: the opencv backend is not compiled in\n");
    } else {
        unsigned char in[5 * 4 * 3];
        unsigned char* out;
        srx_image a, b;
        int i;
        opt.backend = "opencv";
        opt.threads = 1;
        EXPECT(srx_open(argv[1], &opt, &up) == SRX_OK && up != NULL);
        EXPECT(srx_get_info(up, &info) == SRX_OK && strcmp(info.model, "tiny") == 0 && info.scale == 2);
        /* patch auto (the default): chosen per image; a 5x4 image fits the budget and runs whole */
        EXPECT(strcmp(info.backend, "opencv") == 0 && info.patch_h == 0 && info.overlap == 4);
        EXPECT(strstr(srx_tiling_note(up), "patch auto (memory budget ") == srx_tiling_note(up));
        EXPECT(srx_get_plan(up, 5, 4, &plan) == SRX_OK && plan.tiles == 1 && plan.patch_h == 4 && plan.patch_w == 5);
        EXPECT(plan.crop == 1 && plan.computed_pixels == 20 && plan.pad_bottom == 0);
        EXPECT(srx_get_plan(up, 0, 4, &plan) == SRX_ERR_IMAGE);
        EXPECT(srx_output_size(up, 5, 4, &ow, &oh) == SRX_OK && ow == 10 && oh == 8);
        for (i = 0; i < (int)sizeof in; ++i) in[i] = (unsigned char)(i * 5);
        out = (unsigned char*)malloc((size_t)ow * oh * 3);
        a.data = in, a.width = 5, a.height = 4, a.channels = 3, a.dtype = SRX_UINT8, a.stride = 0;
        b.data = out, b.width = ow, b.height = oh, b.channels = 3, b.dtype = SRX_UINT8, b.stride = 0;
        EXPECT(srx_upscale(up, &a, &b, progress, &calls) == SRX_OK && calls == 1);
        b.width = 9;
        EXPECT(srx_upscale(up, &a, &b, NULL, NULL) == SRX_ERR_IMAGE);
        b.width = ow;
        srx_cancel(up);
        EXPECT(srx_upscale(up, &a, &b, NULL, NULL) == SRX_ERR_CANCELLED);
        EXPECT(srx_upscale(up, &a, &b, NULL, NULL) == SRX_OK);
        free(out);
        srx_close(up);
    }
    printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
