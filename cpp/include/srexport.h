/* srexport.h - the C ABI of libsrexport: run sr-export bundles without Python.
 *
 * A bundle (manifest.json + model.<precision>.onnx, written by `sr-export build`) is
 * opened once and then upscales image buffers with exactly the tiling (patch from a memory
 * budget), crop stitching / window blending and noise-field rules of the Python runtime
 * (srexport.runtime.upscaler.Upscaler).
 *
 *     srx_options opt;
 *     srx_options_init(&opt);
 *     srx_upscaler* up = NULL;
 *     if (srx_open("bundles/pcarn-m-x4", &opt, &up) != SRX_OK) {
 *         fprintf(stderr, "%s\n", srx_last_error());
 *         return 2;
 *     }
 *     int ow, oh;
 *     srx_output_size(up, w, h, &ow, &oh);
 *     srx_image in = {pixels, w, h, 3, SRX_UINT8, 0};
 *     srx_image out = {malloc((size_t)ow * oh * 3), ow, oh, 3, SRX_UINT8, 0};
 *     srx_status st = srx_upscale(up, &in, &out, NULL, NULL);
 *     srx_close(up);
 *
 * Errors: every function that can fail returns an srx_status; srx_last_error() then
 * holds a one-line message for the calling thread (the same wording as the Python
 * runtime's exceptions where they exist).
 *
 * Thread safety:
 *   - srx_open / srx_close / srx_normal_field / srx_bicubic / srx_version /
 *     srx_backend_available may be called from any thread at any time (srx_close not
 *     while another thread still uses that handle).
 *   - One handle may be shared between threads: srx_upscale calls on the same handle
 *     are serialized by a mutex inside the handle (they do not run concurrently). For
 *     parallel work open one handle per thread; handles share nothing. The OpenCV
 *     backend's thread count (srx_options.threads) is process-wide in OpenCV.
 *   - srx_cancel may be called from any thread (e.g. a UI thread) while srx_upscale runs.
 *   - srx_last_error is thread-local: read it on the thread whose call failed.
 *   - Progress callbacks run on the thread that called srx_upscale.
 */
#ifndef SREXPORT_H
#define SREXPORT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && !defined(SRX_STATIC)
#if defined(SRX_BUILDING)
#define SRX_API __declspec(dllexport)
#else
#define SRX_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define SRX_API __attribute__((visibility("default")))
#else
#define SRX_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SRX_VERSION_MAJOR 0
#define SRX_VERSION_MINOR 1
#define SRX_VERSION_PATCH 0
/* The newest bundle format_version this library reads. */
#define SRX_BUNDLE_FORMAT_VERSION 1

typedef enum srx_status {
    SRX_OK = 0,
    SRX_ERR_ARGUMENT = 1,     /* a NULL pointer, a bad option value, an unknown name */
    SRX_ERR_BUNDLE = 2,       /* missing, corrupt, tampered, truncated or too new bundle */
    SRX_ERR_BACKEND = 3,      /* the backend failed to load or run the graph */
    SRX_ERR_UNAVAILABLE = 4,  /* the backend was not compiled in / has no device */
    SRX_ERR_IMAGE = 5,        /* bad image buffer: channels, dtype, size, stride */
    SRX_ERR_SHAPE = 6,        /* patch / overlap illegal for the model */
    SRX_ERR_CANCELLED = 7,    /* srx_cancel or the progress callback stopped the call */
    SRX_ERR_OUT_OF_MEMORY = 8,
    SRX_ERR_INTERNAL = 9
} srx_status;

typedef enum srx_dtype {
    SRX_UINT8 = 1,   /* [0, 255] <-> [0, 1]; output round(clamp(y, 0, 1) * 255) */
    SRX_UINT16 = 2,  /* [0, 65535] <-> [0, 1]; output round(clamp(y, 0, 1) * 65535) */
    SRX_FLOAT32 = 3  /* [0, 1] nominal; output not clamped */
} srx_dtype;

/* An interleaved (HWC) image buffer: channels 1 (gray), 3 (RGB) or 4 (RGBA, alpha not
 * straight through the network: it is resized with PIL's bicubic filter and clamped).
 * stride is bytes from one row to the next; 0 means packed (width * channels * size). */
typedef struct srx_image {
    void* data;
    int width;
    int height;
    int channels;
    srx_dtype dtype;
    size_t stride;
} srx_image;

/* srx_options.patch_h / patch_w: SRX_PATCH_AUTO (both, the default) takes the largest
 * patch whose peak memory (modelled from the graph) fits the budget, and an image that fits
 * runs whole at its own legal size; networks whose output depends on the whole patch (no
 * finite halo: BPP's instance norm) keep the manifest's patch. SRX_PATCH_BUNDLE: the
 * manifest's patch. A positive patch_h (patch_w 0: the same): that patch. */
#define SRX_PATCH_AUTO 0
#define SRX_PATCH_BUNDLE (-1)

/* Options of srx_open. Always call srx_options_init first: it sets the defaults and
 * struct_size, which lets later library versions add fields without breaking callers. */
typedef struct srx_options {
    uint32_t struct_size;
    const char* backend;    /* "auto" (default), "tensorrt", "openvino", "onnxruntime", "opencv" */
    const char* precision;  /* "auto" (default): the fastest precision the bundle holds that this machine
                               runs within its recorded accuracy gate (srx_precision_note says which
                               and why); "fp32", "fp16", "int8": the bundle's graph;
                               "bf16": the fp32 graph computed in bf16 (openvino, BF16 CPUs) */
    int patch_h, patch_w;   /* patch in the graph's input pixels; SRX_PATCH_AUTO (default), SRX_PATCH_BUNDLE */
    int overlap;            /* overlap in input pixels (window blending); -1 = the manifest's */
    const char* window;     /* "hamming" (default), "bartlett", "none" */
    int batch;              /* patches per backend call, >= 1 (default 1) */
    double noise;           /* noise amplitude W for models with noise inputs (default 0) */
    uint64_t seed;          /* noise seed (default 0); same seed -> same image as Python */
    int threads;            /* CPU threads for the backend; 0 = the CPUs this process may use */
    int verify_hashes;      /* 1 (default): check every file's SHA-256 on open */
    const char* cache_dir;  /* TensorRT: folder for built engines; OpenVINO: its CACHE_DIR (NULL: none) */
    int device;             /* TensorRT: CUDA device index (default 0) */
    const char* stitch;     /* "auto" (default): crop stitching where the manifest's halo is finite and no
                               overlap is given (exact: tiles overlap by 2 * halo, each output pixel from the
                               tile where it lies at least a halo inside), window blending otherwise;
                               "crop" or "blend" */
    double memory_gib;      /* patch auto's memory budget in GiB; 0 (default): half of the available RAM */
} srx_options;

/* What an open bundle holds and how it will be run. Strings live as long as the handle. */
typedef struct srx_info {
    const char* model;       /* registry name, e.g. "pcarn-m" */
    const char* variant;
    int scale;               /* LR -> output scale */
    const char* input_kind;  /* "lr" or "upscaled" (bicubic pre-upscale) */
    const char* backend;     /* the backend actually used, e.g. "opencv" */
    const char* precision;
    int patch_h, patch_w, overlap, batch;  /* patch 0 x 0: patch auto (per image: srx_get_plan) */
    int noise_inputs;        /* number of noise inputs of the graph */
    const char* window;
} srx_info;

/* How one image is tiled, in the graph's input pixels (srx_get_plan). */
typedef struct srx_plan {
    int patch_h, patch_w;  /* the patch the network runs */
    int tiles;             /* number of patches */
    int overlap;           /* between neighbouring tiles (crop stitching: 2 * halo) */
    int crop;              /* 1: crop stitching, 0: window blending */
    int pad_top, pad_bottom, pad_left, pad_right;  /* reflect padding of an image smaller than a patch */
    long long computed_pixels;                     /* input pixels the network computes */
} srx_plan;

/* Progress after each batch of patches: done and total patches of this image. Return
 * non-zero to cancel (srx_upscale then returns SRX_ERR_CANCELLED). */
typedef int (*srx_progress_fn)(int done, int total, void* user);

typedef struct srx_upscaler srx_upscaler;

SRX_API const char* srx_version(void);
SRX_API const char* srx_last_error(void);
SRX_API const char* srx_status_name(srx_status status);

/* 1 when the backend was compiled into this library ("tensorrt", "openvino",
 * "onnxruntime", "opencv"); whether it can run still depends on the bundle and the machine. */
SRX_API int srx_backend_available(const char* backend);

SRX_API void srx_options_init(srx_options* options);

/* Open a bundle directory. On success *out is a handle to free with srx_close. */
SRX_API srx_status srx_open(const char* bundle_dir, const srx_options* options, srx_upscaler** out);
SRX_API void srx_close(srx_upscaler* upscaler);
SRX_API srx_status srx_get_info(const srx_upscaler* upscaler, srx_info* info);

/* Output size for an input of width x height. */
SRX_API srx_status srx_output_size(const srx_upscaler* upscaler, int width, int height, int* out_width,
                                   int* out_height);

/* The tiling srx_upscale uses for an input of width x height (patch auto: the patch the
 * budget allows for this image). */
SRX_API srx_status srx_get_plan(const srx_upscaler* upscaler, int width, int height, srx_plan* plan);

/* One line on how images are tiled (patch, stitching, budget), as the Python runtime's run
 * line says it; lives as long as the handle. */
SRX_API const char* srx_tiling_note(const srx_upscaler* upscaler);

/* Why precision "auto" chose srx_info.precision, as the Python runtime's run line says it
 * ("precision auto: int8 (...)"); "" when a precision was given. Lives as long as the handle. */
SRX_API const char* srx_precision_note(const srx_upscaler* upscaler);

/* Change the noise amplitude and seed of an open handle (applies to later calls). */
SRX_API srx_status srx_set_noise(srx_upscaler* upscaler, double noise, uint64_t seed);

/* Upscale `in` into `out`. out must have the size srx_output_size gives, the same
 * channels as in, and any dtype (the result is quantized to it). in and out must not
 * overlap. progress may be NULL. */
SRX_API srx_status srx_upscale(srx_upscaler* upscaler, const srx_image* in, const srx_image* out,
                               srx_progress_fn progress, void* user);

/* Cancel the srx_upscale running on this handle (or, if none runs, the next one to
 * start) at its next batch boundary; that call returns SRX_ERR_CANCELLED. */
SRX_API void srx_cancel(srx_upscaler* upscaler);

/* The noise field of srexport.runtime.noise.normal_field: N(0, 1) samples of field
 * `stream` at rows [top, top + height) and columns [left, left + width) of the
 * whole-image grid (Philox4x32-10 + Box-Muller). out holds height * width floats. */
SRX_API srx_status srx_normal_field(uint64_t seed, uint32_t stream, int64_t top, int64_t left, int height,
                                    int width, float* out);

/* One float plane resized with PIL's bicubic filter (Image.resize(..., BICUBIC) on a
 * mode "F" image), as srexport.runtime.resize.bicubic. */
SRX_API srx_status srx_bicubic(const float* in, int height, int width, float* out, int out_height, int out_width);

#ifdef __cplusplus
}
#endif

#endif /* SREXPORT_H */
