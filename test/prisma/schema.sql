-- DDL of schema.prisma, written as `prisma migrate` would for PostgreSQL (constraint and index
-- names follow Prisma's conventions, so P2002/P2003 name the constraints Prisma expects).
DROP TABLE IF EXISTS "_LabelToProject", ep_badges, ep_tasks, ep_labels, ep_projects, ep_accounts CASCADE;
DROP TYPE IF EXISTS "Plan", "Status";
CREATE TYPE "Plan" AS ENUM ('FREE', 'PRO', 'ENTERPRISE');
CREATE TYPE "Status" AS ENUM ('DRAFT', 'ACTIVE', 'ARCHIVED');
CREATE TABLE ep_accounts (
  id BIGSERIAL NOT NULL,
  handle TEXT NOT NULL,
  plan "Plan" NOT NULL DEFAULT 'FREE',
  credit DECIMAL(20,6) NOT NULL DEFAULT 0,
  visits BIGINT NOT NULL DEFAULT 0,
  avatar BYTEA,
  settings JSONB,
  rating DOUBLE PRECISION NOT NULL DEFAULT 0,
  "publicId" TEXT NOT NULL,
  "joinedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  birthday DATE,
  "updatedAt" TIMESTAMP(3) NOT NULL,
  CONSTRAINT ep_accounts_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ep_accounts_handle_key ON ep_accounts(handle);
CREATE UNIQUE INDEX "ep_accounts_publicId_key" ON ep_accounts("publicId");
CREATE TABLE ep_projects (
  id TEXT NOT NULL,
  slug TEXT NOT NULL,
  name TEXT NOT NULL,
  status "Status" NOT NULL DEFAULT 'DRAFT',
  budget DECIMAL(12,2) NOT NULL,
  stars INTEGER NOT NULL DEFAULT 0,
  "ownerId" BIGINT NOT NULL,
  "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT ep_projects_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX "ep_projects_ownerId_name_key" ON ep_projects("ownerId", name);
CREATE TABLE ep_tasks (
  id TEXT NOT NULL,
  title TEXT NOT NULL,
  done BOOLEAN NOT NULL DEFAULT false,
  priority INTEGER NOT NULL DEFAULT 0,
  estimate DOUBLE PRECISION,
  "dueAt" TIMESTAMP(3),
  tags TEXT[],
  points INTEGER[],
  "projectId" TEXT NOT NULL,
  CONSTRAINT ep_tasks_pkey PRIMARY KEY (id)
);
CREATE INDEX "ep_tasks_projectId_idx" ON ep_tasks("projectId");
CREATE TABLE ep_labels (
  id SERIAL NOT NULL,
  name TEXT NOT NULL,
  color TEXT NOT NULL DEFAULT 'gray',
  CONSTRAINT ep_labels_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ep_labels_name_key ON ep_labels(name);
CREATE TABLE ep_badges (
  id SERIAL NOT NULL,
  title TEXT NOT NULL,
  "accountId" BIGINT,
  CONSTRAINT ep_badges_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX "ep_badges_accountId_key" ON ep_badges("accountId");
CREATE TABLE "_LabelToProject" (
  "A" INTEGER NOT NULL,
  "B" TEXT NOT NULL,
  CONSTRAINT "_LabelToProject_AB_pkey" PRIMARY KEY ("A", "B")
);
CREATE INDEX "_LabelToProject_B_index" ON "_LabelToProject"("B");
ALTER TABLE ep_projects ADD CONSTRAINT "ep_projects_ownerId_fkey" FOREIGN KEY ("ownerId")
  REFERENCES ep_accounts(id) ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE ep_tasks ADD CONSTRAINT "ep_tasks_projectId_fkey" FOREIGN KEY ("projectId")
  REFERENCES ep_projects(id) ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE ep_badges ADD CONSTRAINT "ep_badges_accountId_fkey" FOREIGN KEY ("accountId")
  REFERENCES ep_accounts(id) ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "_LabelToProject" ADD CONSTRAINT "_LabelToProject_A_fkey" FOREIGN KEY ("A")
  REFERENCES ep_labels(id) ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "_LabelToProject" ADD CONSTRAINT "_LabelToProject_B_fkey" FOREIGN KEY ("B")
  REFERENCES ep_projects(id) ON DELETE CASCADE ON UPDATE CASCADE;
