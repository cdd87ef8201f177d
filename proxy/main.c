#include <stdio.h>
int main(void)
{
    puts("drpc-sidecar");
    return 0;
}
