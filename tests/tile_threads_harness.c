/* Loads a model binary and runs it `runs` times on `threads` threads with zero inputs; prints
 * each run's cycles, run mode and output bytes' CRC.  Built with -fsanitize=thread by
 * tests/test_sim_tile_threads.py to check that tile-parallel runs have no data race. */
#include "mlip_sim.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s model.bin threads runs\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) return 2;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)size);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) return 2;
    fclose(f);
    mlip_params params;
    mlip_default_params(&params);
    params.threads = (uint32_t)atoi(argv[2]);
    char msg[512];
    mlip_sim *sim = NULL;
    if (mlip_sim_load(&sim, data, (size_t)size, &params, msg, sizeof msg) != MLIP_OK) {
        fprintf(stderr, "load: %s\n", msg);
        return 1;
    }
    uint64_t dram_size = 0;
    uint8_t *dram = mlip_sim_dram(sim, &dram_size);
    for (int k = 0; k < atoi(argv[3]); k++) {
        mlip_stats st;
        if (mlip_sim_run(sim, &st, NULL, 0, msg, sizeof msg) != MLIP_OK) {
            fprintf(stderr, "run: %s\n", msg);
            return 1;
        }
        printf("%llu %u %08x\n", (unsigned long long)st.cycles, mlip_sim_run_mode(sim),
               mlip_crc32c(dram, (size_t)dram_size));
    }
    mlip_sim_free(sim);
    free(data);
    return 0;
}
