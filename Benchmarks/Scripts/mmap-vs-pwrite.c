// The kernel paths of a durable 160-byte append without LogStore: pwrite+fdatasync, memcpy into a
// MAP_SHARED mapping+msync(MS_SYNC), memcpy+fdatasync, taking turns (BENCHMARKS.md, 2026-12-04).
// cc -O2 -o mmap-vs-pwrite mmap-vs-pwrite.c -lpthread && ./mmap-vs-pwrite 0 0   (files go to the current directory)
// Arguments: CONVERT (1: write the files once first, so their extents are written), IDLE_THREADS, RECORD_BYTES (160).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <time.h>
#include <pthread.h>
#define SZ (64<<20)
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int mkfile(const char*p,int conv){int fd=open(p,O_RDWR|O_CREAT|O_TRUNC,0644);fallocate(fd,0,0,SZ);
 if(conv){char*b=calloc(1,1<<20);for(int i=0;i<64;i++)pwrite(fd,b,1<<20,(off_t)i<<20);fdatasync(fd);free(b);}return fd;}
static void* idle(void*x){(void)x;for(;;)pause();return 0;}
int main(int argc,char**argv){
 int conv=argc>1?atoi(argv[1]):1; int threads=argc>2?atoi(argv[2]):0; int rec=argc>3?atoi(argv[3]):160;
 for(int i=0;i<threads;i++){pthread_t t;pthread_create(&t,0,idle,0);}
 int fa=mkfile("./mba",conv), fb=mkfile("./mbb",conv), fc=mkfile("./mbc",conv);
 char*mb=mmap(0,SZ,PROT_READ|PROT_WRITE,MAP_SHARED,fb,0); char*mc=mmap(0,SZ,PROT_READ|PROT_WRITE,MAP_SHARED,fc,0);
 char buf[4096]; memset(buf,7,sizeof buf);
 int N=20000,R=20,per=N/R; double *lat[3]; for(int k=0;k<3;k++)lat[k]=malloc(sizeof(double)*N);
 long off[3]={4096,4096,4096}; int n[3]={0,0,0}; double tot[3]={0,0,0};
 for(int r=0;r<R;r++) for(int kk=0;kk<3;kk++){int k=(kk+r)%3;
   double s0=now();
   for(int i=0;i<per;i++){double t=now();
     if(k==0){pwrite(fa,buf,rec,off[0]);fdatasync(fa);}
     else if(k==1){memcpy(mb+off[1],buf,rec);long a=off[1]&~4095L,e=(off[1]+rec+4095)&~4095L;msync(mb+a,e-a,MS_SYNC);}
     else {memcpy(mc+off[2],buf,rec);fdatasync(fc);}
     off[k]+=rec; lat[k][n[k]++]=now()-t;}
   tot[k]+=now()-s0;}
 const char*nm[3]={"pwrite+fdatasync","mmap+msync","mmap+fdatasync"};
 for(int k=0;k<3;k++){qsort(lat[k],n[k],sizeof(double),cmp);printf("%-18s p50 %.1f p99 %.1f  rec/s %.0f  ratio %.3f\n",nm[k],lat[k][n[k]/2],lat[k][n[k]*99/100],n[k]/tot[k]*1e6,(n[k]/tot[k])/(n[0]/tot[0]));}
 unlink("./mba");unlink("./mbb");unlink("./mbc");}
