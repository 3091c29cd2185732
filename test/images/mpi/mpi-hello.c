/* MPI hello for the image harness: each rank prints its rank, the world size
 * and the node it runs on, then all meet in a barrier. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	int rank = -1, size = -1, len = 0;
	char host[MPI_MAX_PROCESSOR_NAME] = "";

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	MPI_Get_processor_name(host, &len);
	printf("mpi-hello: rank %d of %d on %s\n", rank, size, host);
	fflush(stdout);
	MPI_Barrier(MPI_COMM_WORLD);
	MPI_Finalize();
	return 0;
}
