/* colstats: per-column count, mean, standard deviation, min and max of a
 * comma-separated table read from standard input. Part of the example
 * repo's dependency package (deps/build.sh compiles it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 1024

int main(void)
{
    static double sum[MAX_COLS], sq[MAX_COLS], lo[MAX_COLS], hi[MAX_COLS];
    char line[65536];
    long rows = 0;
    int cols = 0;
    while (fgets(line, sizeof line, stdin)) {
        int c = 0;
        for (char *tok = strtok(line, ",\n"); tok && c < MAX_COLS; tok = strtok(NULL, ",\n"), c++) {
            double v = strtod(tok, NULL);
            if (rows == 0 || v < lo[c])
                lo[c] = v;
            if (rows == 0 || v > hi[c])
                hi[c] = v;
            sum[c] += v;
            sq[c] += v * v;
        }
        if (rows == 0)
            cols = c;
        else if (c != cols) {
            fprintf(stderr, "colstats: line %ld has %d columns, expected %d\n", rows + 1, c, cols);
            return 1;
        }
        rows++;
    }
    if (rows == 0) {
        fprintf(stderr, "colstats: no rows\n");
        return 1;
    }
    printf("column,count,mean,std,min,max\n");
    for (int c = 0; c < cols; c++) {
        double mean = sum[c] / (double)rows;
        double var = sq[c] / (double)rows - mean * mean;
        printf("%d,%ld,%.6f,%.6f,%g,%g\n", c, rows, mean, sqrt(var > 0 ? var : 0), lo[c], hi[c]);
    }
    return 0;
}
